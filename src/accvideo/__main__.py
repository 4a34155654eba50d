from accvideo.cli import main

main()
