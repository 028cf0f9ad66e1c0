"""Measuring answers: base vs fine-tuned × closed-book / oracle / retrieved, offline and on live traffic."""
