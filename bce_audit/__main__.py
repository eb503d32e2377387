from bce_audit.cli import main

main()
