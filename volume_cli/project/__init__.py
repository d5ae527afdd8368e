"""Projects: a plugin class (or a project.yaml) plus a dependencies.yaml."""
