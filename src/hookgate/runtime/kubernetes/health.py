"""How a flow's workers are doing, read from pod, Job and Deployment status and events.

Pure functions over observed dicts. The errors a user needs are the ones Kubernetes already
names: a waiting container's reason (``ImagePullBackOff``, ``CrashLoopBackOff``...), a failed
Job's condition, a Deployment's ``ReplicaFailure`` and warning events such as a quota refusal.
"""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]

BAD_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def _conditions(obj: Object) -> dict[str, Object]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def _deleting(obj: Object) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def is_ready(pod: Object) -> bool:
    ready = _conditions(pod).get("Ready", {}).get("status") == "True"
    running = (pod.get("status") or {}).get("phase") == "Running"
    return ready and running and not _deleting(pod)


def ready_addresses(pods: list[Object]) -> set[str]:
    """The IPs of ready pods (a pod without an IP yet cannot take requests)."""
    return {
        address
        for pod in pods
        if is_ready(pod) and isinstance(address := (pod.get("status") or {}).get("podIP"), str)
    }


def is_starting(pod: Object) -> bool:
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return phase in ("Pending", "Running") and not is_ready(pod) and not _deleting(pod)


def finished(job: Object) -> str | None:
    """``Complete`` or ``Failed`` once the Job is over, else None."""
    for kind in ("Complete", "Failed"):
        if _conditions(job).get(kind, {}).get("status") == "True":
            return kind
    return None


def is_active(job: Object) -> bool:
    return finished(job) is None and not _deleting(job)


def restarts(pods: list[Object]) -> int:
    return sum(
        status.get("restartCount", 0)
        for pod in pods
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    )


def last_exit(pods: list[Object]) -> str | None:
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (status.get("lastState") or {}).get("terminated")
            if ended:
                return f"exit code {ended.get('exitCode')} ({ended.get('reason', 'Error')})"
    return None


def is_stopping(pod: Object) -> bool:
    """Asked to stop and still running: finishing what it holds before it exits."""
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return _deleting(pod) and phase in ("Pending", "Running")


def start_failure(before: Object | None, after: Object) -> str | None:
    """Why the pod's worker just failed: a crash (one more restart) or a new bad wait."""
    seen = {
        status.get("name"): status
        for status in ((before or {}).get("status") or {}).get("containerStatuses") or []
    }
    for status in (after.get("status") or {}).get("containerStatuses") or []:
        previous = seen.get(status.get("name"), {})
        if status.get("restartCount", 0) > previous.get("restartCount", 0):
            return last_exit([after]) or "restarted"
        waiting = (status.get("state") or {}).get("waiting") or {}
        was = ((previous.get("state") or {}).get("waiting") or {}).get("reason")
        if waiting.get("reason") in BAD_WAITING and was not in BAD_WAITING:
            return _say(f"pod {after['metadata']['name']}", waiting)
    return None


def last_error(
    *,
    pods: list[Object],
    jobs: list[Object],
    deployments: list[Object],
    warnings: list[Object],
) -> str | None:
    """The most telling current error of a flow's workers, in Kubernetes' own words."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in BAD_WAITING:
                return _say(f"pod {pod['metadata']['name']}", waiting)
    for job in jobs:
        if finished(job) == "Failed":
            return _say(f"job {job['metadata']['name']} failed", _conditions(job)["Failed"])
    for deployment in deployments:
        conditions = _conditions(deployment)
        failure = conditions.get("ReplicaFailure", {})
        if failure.get("status") == "True":
            return _say(f"deployment {deployment['metadata']['name']}", failure)
        progress = conditions.get("Progressing", {})
        if progress.get("status") == "False":
            return _say(f"deployment {deployment['metadata']['name']}", progress)
    if warnings:
        event = warnings[-1]
        name = (event.get("involvedObject") or {}).get("name", "")
        return _say(f"{name}", event)
    return None


def _say(what: str, source: Object) -> str:
    reason, message = source.get("reason") or "Error", source.get("message") or ""
    return f"{what}: {reason}: {message}" if message else f"{what}: {reason}"
