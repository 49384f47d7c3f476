from counting.cli import main

raise SystemExit(main())
