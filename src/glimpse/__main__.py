from glimpse.cli.main import main

main()
