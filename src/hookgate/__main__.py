from hookgate.cli.main import main

main()
