"""Push a project's generation to other volumes through S3, and apply it there (issue 12)."""
