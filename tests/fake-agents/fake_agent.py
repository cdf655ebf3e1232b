#!/usr/bin/env python3
"""A fake agent CLI for tests/agents.rs: `fake_agent.py PROVIDER ARGS…`.

It speaks PROVIDER's documented headless interface (arguments in, event lines and exit
status out; see /work/shared/agent-clis.md) without any network or key. What it does is
chosen by the prompt: `SCENARIO=NAME` (success, max_turns, budget, ratelimit, hang, crash,
leak, slow, escapes) and `EDIT=PATH` (the file it appends a line to). It records every call (argv,
stdin, environment names, cwd) as a JSON line in $FAKE_AGENT_LOG/calls.jsonl.
"""
import json, os, re, sys, time

provider = sys.argv[1]
args = sys.argv[2:]


def prompt_of():
    if provider == "command":
        with open(os.environ["HYPERION_PROMPT_FILE"]) as f:
            return f.read()
    if provider in ("claude", "gemini"):
        return args[args.index("-p") + 1]
    if provider == "aider":
        return args[args.index("--message") + 1]
    return args[-1]  # codex, opencode: the prompt comes last


stdin = "" if sys.stdin is None else sys.stdin.read()
prompt = prompt_of()
# Next to the worktree (the harness gives the agent no variable it does not need).
log = os.environ.get("FAKE_AGENT_LOG") or os.path.join(os.path.dirname(os.getcwd()), "fake-log")
scenario = (re.search(r"SCENARIO=(\w+)", prompt) or [None, "success"])[1]
edit = (re.search(r"EDIT=(\S+)", prompt) or [None, None])[1]
calls = 0
if log:
    os.makedirs(log, exist_ok=True)
    path = os.path.join(log, "calls.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            calls = sum(1 for l in f if json.loads(l)["scenario"] == scenario and json.loads(l)["provider"] == provider)
    with open(path, "a") as f:
        f.write(json.dumps({"provider": provider, "scenario": scenario, "pid": os.getpid(), "argv": sys.argv,
                            "stdin": stdin, "env": sorted(os.environ), "cwd": os.getcwd(),
                            "prompt": prompt}) + "\n")
attempt = calls + 1
# Built at run time, so that no secret scanner finds it in this file.
LEAK = "AKIA" + "Z7Q3R5T1V9X2B4D6"


def out(obj):
    print(json.dumps(obj) if not isinstance(obj, str) else obj, flush=True)


def do_edit():
    if edit:
        os.makedirs(os.path.dirname(edit) or ".", exist_ok=True)
        with open(edit, "a") as f:
            f.write(f"made by {provider}\n")
    # What the CLI keeps for itself in the worktree: must not reach the request.
    if provider == "aider":
        with open(".aider.chat.history.md", "w") as f:
            f.write("# chat\n")
    if provider == "claude":
        os.makedirs(".claude", exist_ok=True)
        with open(".claude/settings.local.json", "w") as f:
            f.write("{}\n")


def message(text):
    if provider == "claude":
        out({"type": "assistant", "message": {"content": [{"type": "text", "text": text}],
                                              "usage": {"input_tokens": 100, "output_tokens": 50}}})
    elif provider == "codex":
        out({"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": text}})
        out({"type": "turn.completed", "usage": {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 50}})
    elif provider == "gemini":
        out({"type": "message", "timestamp": "2026-01-01T00:00:00Z", "role": "assistant", "content": text, "delta": False})
    elif provider == "aider":
        out(text)
        out("Tokens: 100 sent, 50 received. Cost: $0.10 message, $%.2f session." % (0.1 * step[0]))
    elif provider == "opencode":
        out({"type": "text", "timestamp": 1, "sessionID": "s", "part": {"type": "text", "text": text}})
        out({"type": "step_finish", "timestamp": 1, "sessionID": "s", "part": {"cost": 0.1, "tokens": {"input": 100, "output": 50, "reasoning": 0, "cache": {"read": 0, "write": 0}}}})
    else:
        out({"type": "message", "text": text})
        out({"type": "usage", "input": 100, "output": 50})
        out({"type": "cost", "usd": 0.1})


step = [1]


def start():
    if provider == "claude":
        out({"type": "system", "subtype": "init", "session_id": "s1", "model": "fake", "tools": [], "permissionMode": "acceptEdits"})
    elif provider == "codex":
        out({"type": "thread.started", "thread_id": "t1"})
        out({"type": "turn.started"})
    elif provider == "gemini":
        out({"type": "init", "timestamp": "2026-01-01T00:00:00Z", "session_id": "s1", "model": "fake"})
    elif provider == "opencode":
        out({"type": "step_start", "timestamp": 1, "sessionID": "s", "part": {}})


def succeed(text="done"):
    if provider == "claude":
        out({"type": "result", "subtype": "success", "is_error": False, "result": text, "session_id": "s1",
             "total_cost_usd": 0.25, "duration_ms": 10, "num_turns": 1,
             "usage": {"input_tokens": 100, "output_tokens": 50}})
    elif provider == "gemini":
        out({"type": "result", "timestamp": "2026-01-01T00:00:00Z", "status": "success",
             "stats": {"total_tokens": 150, "input_tokens": 100, "output_tokens": 50, "duration_ms": 10, "tool_calls": 1}})
    elif provider == "opencode":
        out({"type": "done", "timestamp": 1, "sessionID": "s", "rejected": []})
    elif provider == "aider" and log:
        with open(os.path.join(os.path.dirname(args[args.index("--analytics-log") + 1]), "aider-analytics.jsonl"), "a") as f:
            f.write(json.dumps({"event": "message_send", "time": 1, "properties": {
                "prompt_tokens": 100, "completion_tokens": 50, "cost": 0.1, "total_cost": 0.1}}) + "\n")
    sys.exit(0)


def fail(kind, text):
    """A documented failure of kind: max_turns, ratelimit."""
    if provider == "claude":
        if kind == "ratelimit":
            out({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 1, "retry_delay_ms": 10,
                 "error_status": 429, "error": "rate_limit"})
            out({"type": "result", "subtype": "success", "is_error": True, "result": "API Error: 429 rate_limit_error",
                 "session_id": "s1", "total_cost_usd": 0.0, "usage": {"input_tokens": 0, "output_tokens": 0}})
        else:
            out({"type": "result", "subtype": "error_max_turns", "is_error": True, "result": "", "session_id": "s1",
                 "total_cost_usd": 0.05, "num_turns": 3, "usage": {"input_tokens": 10, "output_tokens": 5}})
        sys.exit(1)
    if provider == "codex":
        out({"type": "turn.failed", "error": {"message": text}})
        sys.exit(1)
    if provider == "gemini":
        if kind == "max_turns":
            sys.exit(53)
        out({"type": "error", "timestamp": "2026-01-01T00:00:00Z", "severity": "error", "message": text})
        out({"type": "result", "timestamp": "2026-01-01T00:00:00Z", "status": "error", "error": {"type": "api", "message": text},
             "stats": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}})
        sys.exit(1)
    if provider == "aider":
        out(f"litellm.RateLimitError: {text}" if kind == "ratelimit" else f"Error: {text}")
        sys.exit(0)  # aider exits 0 when the LLM call failed
    if provider == "opencode":
        out({"type": "error", "timestamp": 1, "sessionID": "s", "error": {"name": "APIError", "message": text}})
        sys.exit(1)
    out({"type": "error", "message": text, "class": "rate_limit" if kind == "ratelimit" else "max_turns"})
    sys.exit(75 if kind == "ratelimit" else 1)


start()
if scenario == "success":
    do_edit()
    message("I made the change.")
    succeed()
elif scenario == "leak":
    do_edit()
    message(f"the key is {LEAK}")
    succeed(f"found {LEAK}")
elif scenario == "max_turns":
    message("working")
    fail("max_turns", "max turns exceeded")
elif scenario == "ratelimit":
    if attempt == 1:
        fail("ratelimit", "429 Too Many Requests: rate limit reached")
    do_edit()
    message("second time lucky")
    succeed()
elif scenario == "budget":
    # Spends steadily and never stops by itself.
    for i in range(200):
        step[0] = i + 1
        message(f"step {i}")
        time.sleep(0.05)
    succeed()
elif scenario == "slow":
    # Talks, but takes far longer than its wall time.
    for i in range(600):
        message(f"thinking {i}")
        time.sleep(0.1)
    succeed()
elif scenario == "hang":
    message("thinking")
    time.sleep(120)
    succeed()
elif scenario == "escapes":
    # A failure whose words would drive the terminal they are shown on.
    message("working")
    out({"type": "error", "message": "fell over \x1b]0;pwned\x07\x1b[2J", "class": "max_turns"})
    sys.exit(1)
elif scenario == "crash":
    message("about to fall over")
    sys.stderr.write("panic: something broke\n")
    sys.stderr.flush()
    os.kill(os.getpid(), 11)
