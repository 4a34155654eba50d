from accvideo.entry import main

main()
