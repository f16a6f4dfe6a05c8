from djtrace.cli.app import main

main()
