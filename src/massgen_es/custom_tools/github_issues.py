"""Our equivalent of MassGen's GitHub issue analyzer (``massgen/tool/_self_evolution/_github_issue_analyzer.py``):
``fetch_github_issues`` reads a repository's issues from the GitHub REST API (``GET /repos/{repo}/issues``)
and returns MassGen's markdown report (categories, labels, most engaged and most recent issues, insights).

The API's base URL is ``GITHUB_API_URL`` of the executor's environment (GitHub Actions' name for it;
default ``https://api.github.com``); ``GITHUB_TOKEN`` there, when set, authenticates the calls (MassGen
calls anonymously, at 60 requests an hour). The executor hands both to the call outside the event log.

This file is shipped to the agent's sandbox as text and run there by the executor, like a user's tool
file: it uses the standard library only and never imports ``massgen_es``. It needs the network.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

_CATEGORY_LABELS = (("bug", "Bug Fix"), ("enhancement", "Feature Request"), ("feature", "Feature Request"),
                    ("documentation", "Documentation"), ("docs", "Documentation"), ("performance", "Performance"),
                    ("question", "Question/Support"), ("help wanted", "Question/Support"))
_CATEGORY_WORDS = (("Feature Request", ("add", "support", "implement", "new feature", "feature request")),
                   ("Bug Fix", ("bug", "error", "crash", "broken", "fix")),
                   ("Documentation", ("doc", "readme")),
                   ("Performance", ("slow", "performance", "optimize")))


def _get(url: str) -> tuple[int, bytes]:
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "massgen-es-fetch-github-issues"}
    token = os.environ.get("GITHUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _category(title: str, labels: list[str], body: str) -> str:
    lowered = [label.lower() for label in labels]
    for label, category in _CATEGORY_LABELS:  # labels first: the most reliable
        if label in lowered:
            return category
    text = f"{title}\n{body}".lower()
    return next((c for c, words in _CATEGORY_WORDS if any(w in text for w in words)), "Other")


def _summary(issue: dict[str, Any]) -> dict[str, Any]:
    labels = [str(label.get("name", "")) for label in issue.get("labels") or [] if isinstance(label, dict)]
    body = (issue.get("body") or "")[:500]
    comments = int(issue.get("comments") or 0)
    reactions = int((issue.get("reactions") or {}).get("total_count") or 0)
    title = str(issue.get("title") or "")
    return {"number": issue.get("number", 0), "title": title, "labels": labels, "comments": comments,
            "reactions": reactions, "engagement": comments + 2 * reactions, "created_at": issue.get("created_at", ""),
            "category": _category(title, labels, body), "url": issue.get("html_url", ""), "body_preview": body}


def _report(issues: list[dict[str, Any]], repo: str, state: str, labels: list[str] | None) -> str:
    by_category: dict[str, list[dict[str, Any]]] = {}
    by_label: dict[str, int] = {}
    for i in issues:
        by_category.setdefault(i["category"], []).append(i)
        for label in i["labels"]:
            by_label[label] = by_label.get(label, 0) + 1
    lines = [f"# GitHub Issues Analysis: {repo}", f"**State**: {state}"]
    if labels:
        lines.append(f"**Filters**: {', '.join(labels)}")
    lines += [f"**Total Issues Analyzed**: {len(issues)}", "", "## Issues by Category"]
    lines += [f"- **{c}**: {len(v)} issues" for c, v in sorted(by_category.items(), key=lambda kv: -len(kv[1]))]
    lines.append("")
    if by_label:
        lines.append("## Most Common Labels")
        lines += [f"- `{k}`: {n} issues" for k, n in sorted(by_label.items(), key=lambda kv: -kv[1])[:10]]
        lines.append("")
    lines += ["## Top 5 Most Engaged Issues", "*(Based on comments + reactions)*", ""]
    for n, i in enumerate(sorted(issues, key=lambda i: -i["engagement"])[:5], 1):
        lines.append(f"{n}. **#{i['number']}**: {i['title']} ({i['comments']} comments, {i['reactions']} reactions) "
                     f"[{i['category']}]")
    lines += ["", "## 5 Most Recent Issues", ""]
    for n, i in enumerate(sorted(issues, key=lambda i: i["created_at"], reverse=True)[:5], 1):
        shown = ", ".join(f"`{label}`" for label in i["labels"][:3])
        more = f" +{len(i['labels']) - 3} more" if len(i["labels"]) > 3 else ""
        lines.append(f"{n}. **#{i['number']}**: {i['title']} [{i['category']}] {shown}{more}")
    lines += ["", "## 💡 Insights & Recommendations", ""]
    top = max(by_category.items(), key=lambda kv: len(kv[1]))
    lines.append(f"- **Primary User Need**: {top[0]} ({len(top[1])} requests)")
    engaged = [i for i in issues if i["engagement"] > 5]
    if engaged:
        lines.append(f"- **High Engagement**: {len(engaged)} issues with 5+ comments/reactions")
    features, bugs = len(by_category.get("Feature Request", [])), len(by_category.get("Bug Fix", []))
    if features or bugs:
        lines.append(f"- **Feature vs Bug Ratio**: {features} features / {bugs} bugs")
    lines += ["", "**Next Steps**: Review high-engagement issues and top category for prioritization."]
    return "\n".join(lines)


async def fetch_github_issues(repo: str, state: str = "open", labels: list[str] | None = None,
                              limit: int = 50) -> str:
    """Fetch and analyze GitHub issues for a repository: titles, labels, engagement and categories, to
    understand user needs, feature requests and pain points. Pull requests are left out.

    Args:
        repo: Repository in format "owner/repo" (e.g., "Leezekun/MassGen")
        state: Issue state - "open", "closed", or "all" (default: "open")
        labels: Optional list of label names to filter by (e.g., ["enhancement", "bug"])
        limit: Maximum number of issues to analyze (default: 50, max: 100)
    """
    limit = max(1, min(limit, 100))
    state = state if state in ("open", "closed", "all") else "open"
    # The endpoint lists pull requests too: ask for twice as many, then drop them.
    query = {"state": state, "per_page": min(limit * 2, 100), "sort": "created", "direction": "desc"}
    if labels:
        query["labels"] = ",".join(labels)
    base = (os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    url = f"{base}/repos/{urllib.parse.quote(repo, safe='/')}/issues?{urllib.parse.urlencode(query)}"
    try:
        status, raw = await asyncio.to_thread(_get, url)
    except (OSError, ValueError) as exc:
        return f"❌ Network error fetching issues: {exc}"
    if status != 200:
        return f"❌ Error fetching issues: HTTP {status}\n{raw[:1000].decode('utf-8', 'replace')}"
    try:
        found = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"❌ Error analyzing issues: the API answered no JSON ({exc})"
    listed = [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []
    issues = [_summary(i) for i in listed if "pull_request" not in i][:limit]
    if not issues:
        return (f"ℹ️  No issues found matching criteria (repo: {repo}, state: {state}, labels: {labels})\n"
                f"Fetched {len(listed)} items, filtered out {len(listed) - len(issues)} pull requests.")
    return _report(issues, repo, state, labels)
