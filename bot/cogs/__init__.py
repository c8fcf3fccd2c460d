"""One cog per feature (RoboDanny style); none imports another."""
