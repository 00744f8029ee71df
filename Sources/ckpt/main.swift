import CheckpointCLI

await CheckpointCommand.main()
