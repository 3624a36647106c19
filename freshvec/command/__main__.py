"""``python -m freshvec.command``: the ``freshvec`` command without its console script."""

from freshvec.command import main

main()
