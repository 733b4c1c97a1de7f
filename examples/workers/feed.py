"""A polling worker: each run reads the lines appended to $FEED since the previous run."""

import os

from hookgate.worker import Request, serve

FEED = os.environ.get("FEED", "feed.txt")


def handle(request: Request) -> dict[str, object] | None:
    run = request.json()                      # {"scheduledAt": "…Z", "snapshot": … or null}
    offset = (run["snapshot"] or {}).get("offset", 0)
    try:
        with open(FEED, "rb") as feed:
            if os.fstat(feed.fileno()).st_size < offset:
                offset = 0                    # the file was replaced: start again
            feed.seek(offset)
            data = feed.read()
    except FileNotFoundError:
        return None                           # 204: nothing to do, the snapshot is kept
    lines = data[: data.rfind(b"\n") + 1]     # a half-written last line waits for the next run
    for line in lines.splitlines():
        print("new line:", line.decode(errors="replace"), flush=True)   # the real work
    return {"snapshot": {"offset": offset + len(lines)}}


if __name__ == "__main__":
    serve(handle)
