#!/usr/bin/env python3
"""Print {"app": ..., "nginx": ..., "db": ...} image tags: hashes of what goes into each image.

An unchanged tree gives unchanged tags, so nothing is rebuilt or redeployed.
Usage: content_hash.py APP_DIR NGINX_DIR DB_DIR BASE_ID PYTHON ARCH UIDS
(UIDS: JSON {"app": ..., "nginx": ..., "db": ...}, the users the images are built for)
"""

import hashlib
import json
import sys
from pathlib import Path

# Never part of an image (the Dockerfile's .dockerignore says the same).
EXCLUDED = {"tests", "wheelhouse", "__pycache__", ".pytest_cache", ".ruff_cache", "instance"}


def tree_digest(root, *salts):
    digest = hashlib.sha256()
    for salt in salts:
        digest.update(salt.encode() + b"\0")
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if EXCLUDED & set(relative.parts) or path.suffix == ".pyc" or relative.parts[0].endswith(".egg-info"):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def main(app_dir, nginx_dir, db_dir, base_id, python, arch, uids):
    uids = {name: str(uid) for name, uid in json.loads(uids).items()}
    app = tree_digest(app_dir, base_id, python, arch, uids["app"])
    # nginx copies only the app's static files: other app changes must not restart the edge.
    static = tree_digest(Path(app_dir) / "loginapp" / "static", base_id)
    nginx = tree_digest(nginx_dir, static, uids["nginx"])
    db = tree_digest(db_dir, base_id, uids["db"])
    print(json.dumps({"app": app, "nginx": nginx, "db": db}))


if __name__ == "__main__":
    main(*sys.argv[1:])
