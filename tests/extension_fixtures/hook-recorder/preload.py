def preload(parser):
    parser.add_argument("--hook-recorder-label", type=str, default="recorded", help="hook-recorder test flag")
