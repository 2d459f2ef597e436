"""Business services: framework-free functions shared by the API, the CLI and notebooks."""
