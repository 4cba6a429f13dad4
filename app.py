"""Start the sme-qa chat: ``python app.py [--corpus DIR] [--vectors DIR] [--host H] [--port N] [--auth U:P]``.

The same as ``sme-qa serve``: indexes new or changed articles first, then prints the URL.
"""

import os
import sys

if __name__ == "__main__":
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from sme_qa.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
