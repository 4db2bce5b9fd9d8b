"""A small program with a known shape, to profile with `make demo`:
about half its time parsing, a third hashing (in a C call that holds the
GIL), the rest sleeping in a worker thread."""

import hashlib
import json
import threading
import time


def parse_records(n):
    text = json.dumps([{"id": i, "name": "item-%d" % i, "tags": ["a", "b", "c"]} for i in range(n)])
    return len(json.loads(text))


def tokenize(line):
    return [word.strip(".,") for word in line.split()]


def count_words(lines):
    counts = {}
    for line in lines:
        for word in tokenize(line):
            counts[word] = counts.get(word, 0) + 1
    return counts


def hash_blob(size):
    return hashlib.sha256(b"x" * size).hexdigest()


def background_poller(stop):
    while not stop.is_set():
        time.sleep(0.01)


def main():
    stop = threading.Event()
    poller = threading.Thread(target=background_poller, args=(stop,), name="poller")
    poller.start()
    lines = ["The quick brown fox jumps over the lazy dog, again and again."] * 2000
    end = time.perf_counter() + 2.0
    while time.perf_counter() < end:
        parse_records(2000)
        count_words(lines)
        hash_blob(8_000_000)
    stop.set()
    poller.join()


if __name__ == "__main__":
    main()
