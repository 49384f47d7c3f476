from counting import main

raise SystemExit(main())
