"""Signs two assertions and posts them to a Steme HTTP gateway; prints one ack per record.
Usage: python3 produce.py [URL] [KEY_FILE]   (KEY_FILE as `steme keygen --out` writes it)"""
import json, sys, time, urllib.request, steme_sign

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1/topics/facts/assertions"
key = steme_sign.load_key(sys.argv[2] if len(sys.argv) > 2 else "me.key")
ada = {"subject": "urn:person:ada", "source": "wiki", "issued_at": int(time.time() * 1000)}
facts = [{**ada, "predicate": "name", "object": "Ada Lovelace"},
         {**ada, "predicate": "born", "object": 1815}]
body = json.dumps([steme_sign.sign(fact, key) for fact in facts]).encode()
request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
with urllib.request.urlopen(request) as response:
    print("\n".join(json.dumps(ack) for ack in json.load(response)))
