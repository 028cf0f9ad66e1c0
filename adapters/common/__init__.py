"""What Slack and Discord share: splitting, the live message, in-flight tracking, thread memory, texts."""
