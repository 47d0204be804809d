from cxrssl.cli import main

raise SystemExit(main())
