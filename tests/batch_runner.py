"""A stand-in for ``vllm run-batch``: ``python tests/batch_runner.py --answers TABLE.json -i IN -o OUT --model M``.

Reads Batch-API JSONL and writes one result line per request in the format ``vllm run-batch`` and OpenAI
write, answering from a JSON table (question -> answer) through the loopback server's canned generator,
so its results equal the server's. ``--fail MESSAGE`` prints the message and exits 1 without output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.openai_server import _chat_response, answer_table, canned_generator  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("-i", "--input-file", required=True)
    p.add_argument("-o", "--output-file", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--answers", required=True, help="JSON object: question -> answer")
    p.add_argument("--fail", help="exit 1 with this message instead")
    a = p.parse_args()
    if a.fail:
        print(a.fail, file=sys.stderr)
        return 1
    generate = canned_generator(answer_table(json.loads(Path(a.answers).read_text())))
    with open(a.output_file, "w") as out:
        for n, text in enumerate(Path(a.input_file).read_text().splitlines()):
            line = json.loads(text)
            if line["body"].get("model") != a.model:
                response = {"status_code": 400, "request_id": f"req-{n}", "body": None}
                result = {"id": f"req-{n}", "custom_id": line["custom_id"], "response": response,
                          "error": f"The model `{line['body'].get('model')}` does not exist."}
            else:
                body = _chat_response(line["body"], generate(line["body"]), with_usage=True)
                result = {"id": f"req-{n}", "custom_id": line["custom_id"], "error": None,
                          "response": {"status_code": 200, "request_id": f"req-{n}", "body": body}}
            out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
