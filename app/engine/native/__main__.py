import sys

from app.engine.native import main

sys.exit(main(sys.argv[1:]))
