"""S3 remotes: where a project can be pushed beyond one volume (issue 12)."""
