"""Model intake: load a file safely, estimate its memory, build its inputs."""
