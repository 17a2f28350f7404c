from wtalkit.cli import main

main()
