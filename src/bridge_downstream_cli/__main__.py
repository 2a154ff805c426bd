import sys

from bridge_downstream_cli.main import main

sys.exit(main())
