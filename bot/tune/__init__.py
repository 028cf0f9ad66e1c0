"""Fine-tuning from the knowledge base: RAFT training data, training jobs on any backend, registration."""
