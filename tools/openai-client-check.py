#!/usr/bin/env python3
"""Checks `meshlm serve` with the official `openai` Python client.

    openai-client-check.py BASE_URL MODEL            # models, completions, chat, streams, n, errors
    openai-client-check.py BASE_URL MODEL --load N --concurrency C
                                                     # N requests, C at a time; no failure allowed

Every client is strict (`_strict_response_validation=True`, `max_retries=0`) except for the
/v1/completions stream: the client validates each chunk as a whole Completion, which requires
a finish_reason, so OpenAI's own `finish_reason: null` chunks fail strict mode there.
Prints one `ok NAME` line per check (or a JSON summary for --load) and exits 1 on failure.
"""
import argparse
import asyncio
import json
import sys
import time

import openai


def check(base_url: str, model: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, _strict_response_validation=True)
    models = client.models.list()
    assert [m.id for m in models.data] == [model], models
    print("ok models")

    completion = client.completions.create(model=model, prompt="Hello", max_tokens=8, temperature=0)
    assert completion.object == "text_completion"
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens == 5 and completion.usage.completion_tokens >= 1, completion.usage
    again = client.completions.create(model=model, prompt="Hello", max_tokens=8, temperature=0)
    assert again.choices[0].text == completion.choices[0].text, "greedy is not deterministic"
    print("ok completion")

    seeded = [client.completions.create(model=model, prompt="Hi", max_tokens=12, temperature=1.0, seed=7).choices[0].text
              for _ in range(2)]
    assert seeded[0] == seeded[1], seeded
    print("ok seed")

    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                          temperature=0, logprobs=True, top_logprobs=2)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    assert chat.choices[0].logprobs is not None and len(chat.choices[0].logprobs.content) >= 1
    print("ok chat")

    pieces = []
    finish = None
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                                temperature=0, stream=True):
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    assert "".join(pieces) == (chat.choices[0].message.content or ""), (pieces, chat.choices[0].message.content)
    assert finish in ("stop", "length")
    print("ok chat-stream")

    lenient = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    streamed = "".join(chunk.choices[0].text for chunk in
                       lenient.completions.create(model=model, prompt="Hello", max_tokens=8, temperature=0, stream=True)
                       if chunk.choices)
    assert streamed == completion.choices[0].text, (streamed, completion.choices[0].text)
    print("ok completion-stream")

    many = client.completions.create(model=model, prompt="Hello", max_tokens=6, temperature=1.0, seed=11, n=3,
                                     extra_body={"ignore_eos": True})
    assert [c.index for c in many.choices] == [0, 1, 2], many.choices
    assert many.usage.prompt_tokens == 5 and many.usage.completion_tokens == 18, many.usage
    chats = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                           temperature=1.0, seed=11, n=2, logprobs=True, extra_body={"ignore_eos": True})
    assert [c.index for c in chats.choices] == [0, 1] and chats.usage.completion_tokens == 8, chats
    assert all(len(c.logprobs.content) == 4 for c in chats.choices)
    streamed = {}
    finishes = {}
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                                temperature=1.0, seed=11, n=2, stream=True,
                                                extra_body={"ignore_eos": True}):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = finishes.get(choice.index, 0) + 1
    assert streamed == {c.index: c.message.content for c in chats.choices}, (streamed, chats.choices)
    assert finishes == {0: 1, 1: 1}, finishes
    print("ok n")

    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as error:
        assert "does not exist" in str(error)
    try:
        client.completions.create(model=model, prompt="x", max_tokens=-1)
        raise AssertionError("negative max_tokens accepted")
    except openai.BadRequestError as error:
        assert "max_tokens must be at least 0" in str(error)
    try:
        client.completions.create(model=model, prompt="x", max_tokens=1, n=0)
        raise AssertionError("n 0 accepted")
    except openai.BadRequestError as error:
        assert "n must be in [1, 64], got 0" in str(error)
    print("ok errors")


async def load(base_url: str, model: str, count: int, concurrency: int) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, _strict_response_validation=True)
    semaphore = asyncio.Semaphore(concurrency)
    failures = []
    latencies = []

    async def one(index: int) -> None:
        async with semaphore:
            start = time.perf_counter()
            try:
                if index % 2 == 0:
                    reply = await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": f"Request {index}"}], max_tokens=16,
                        temperature=0.7, seed=index)
                    assert reply.choices[0].finish_reason in ("stop", "length")
                else:
                    stream = await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": f"Request {index}"}], max_tokens=16,
                        temperature=0, stream=True)
                    async for _ in stream:
                        pass
                latencies.append(time.perf_counter() - start)
            except Exception as error:  # every failure is reported, none ignored
                failures.append(f"request {index}: {error!r}")

    start = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(count)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    print(json.dumps({"requests": count, "concurrency": concurrency, "failures": len(failures), "seconds": round(elapsed, 3),
                      "p50_s": round(latencies[len(latencies) // 2], 4) if latencies else None,
                      "p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 4) if latencies else None}))
    for failure in failures[:10]:
        print(failure, file=sys.stderr)
    if failures:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("model")
    parser.add_argument("--load", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    if arguments.load:
        asyncio.run(load(arguments.base_url, arguments.model, arguments.load, arguments.concurrency))
    else:
        check(arguments.base_url, arguments.model)


if __name__ == "__main__":
    main()
