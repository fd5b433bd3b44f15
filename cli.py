"""`python cli.py ...` is `irstream ...`, for a checkout that is not installed."""

from irstream.cli import main

if __name__ == "__main__":
    main()
