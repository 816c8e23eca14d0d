"""django-redis on Redis Cluster: see "Scaling beyond one machine"."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from redis.cluster import RedisCluster


class RedisClusterConnectionFactory:
    """Give django-redis a Redis Cluster client instead of a one-node client.

    LOCATION names any node of the cluster: the client learns the others and
    which hash slots each serves, and sends each command to the node that
    holds its key. Of the cache's OPTIONS it takes SOCKET_TIMEOUT and
    SOCKET_CONNECT_TIMEOUT; put a user name and password in the URL.
    """

    # One client per cluster and process, shared by every thread: it holds
    # the slot map and a connection pool per node.
    _clusters: ClassVar[dict[tuple[str, float | None, float | None], RedisCluster]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, options: dict[str, Any]) -> None:
        self.socket_timeout: float | None = options.get("SOCKET_TIMEOUT")
        self.socket_connect_timeout: float | None = options.get(
            "SOCKET_CONNECT_TIMEOUT"
        )

    def connect(self, url: str) -> RedisCluster:
        key = (url, self.socket_timeout, self.socket_connect_timeout)
        with self._lock:
            client = self._clusters.get(key)
            if client is None:
                client = self._clusters[key] = RedisCluster.from_url(
                    url,
                    socket_timeout=self.socket_timeout,
                    socket_connect_timeout=self.socket_connect_timeout,
                )
            return client

    def disconnect(self, connection: RedisCluster) -> None:
        # Other threads share the client: leave its connections open, as
        # django-redis leaves its pools open by default.
        pass
