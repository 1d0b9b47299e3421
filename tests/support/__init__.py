"""What the tests share: model-directory makers, the ModelScope oracle runner, comparators, graph helpers."""
