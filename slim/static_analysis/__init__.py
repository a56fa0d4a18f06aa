"""Reading application code without running it: Python imports, manifests, shell scripts, programs named."""
