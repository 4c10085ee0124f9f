"""The only package that imports Ray: Ray Data stages, Serve deployments, Ray Train wrappers."""
