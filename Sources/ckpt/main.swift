import CheckpointCLI

CheckpointCommand.runMain()
