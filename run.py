"""wsss entry point: `python run.py stage=<stage> dataset=<dataset> backbone=<backbone> [key=value ...]`."""
from wsss.app import main

if __name__ == "__main__":
    main()
