"""Drop cached reductions from the cache that ``EVENTLOG_CACHE_ALIAS`` names."""

from __future__ import annotations

import re
from argparse import ArgumentParser
from typing import Any

from django.core.cache import BaseCache, InvalidCacheBackendError, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_eventlog.aggregates import Aggregate
from django_eventlog.caching import key_prefix
from django_eventlog.conf import conf, load_aggregate

# Characters a Redis glob pattern treats specially. Key prefixes allowed by
# check django_eventlog.E008 hold none, but a misconfigured one must not turn
# a prefix delete into a wider one.
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _load_aggregate(path: str) -> type[Aggregate]:
    try:
        return load_aggregate(path)
    except ImproperlyConfigured as e:
        raise CommandError(
            f"{e} Give the dotted path of an Aggregate subclass, such as "
            "myapp.aggregates.Payment, or use --all."
        ) from e


class Command(BaseCommand):
    help = (
        "Drop cached reductions from the cache named by EVENTLOG_CACHE_ALIAS: "
        "those of the given aggregate classes (dotted paths of Aggregate "
        "subclasses, such as myapp.aggregates.Payment), or of every aggregate "
        "with --all. The next reduce of each log then folds all its events "
        "again. Deleting by key prefix needs a backend with delete_pattern() "
        "(django-redis); on other backends the command refuses unless "
        "--whole-alias is given, which clears the ENTIRE cache alias, entries "
        "of other code included. Give EVENTLOG_CACHE_ALIAS a cache of its own "
        "to make that harmless. To retire the reductions of an aggregate whose "
        "apply() or fields changed, bumping its 'version' is enough: entries of "
        "other versions are never read again, and expire after their timeout."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "aggregates",
            nargs="*",
            metavar="AGGREGATE",
            help="Dotted path of an Aggregate subclass whose entries to drop.",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            dest="all_aggregates",
            help="Drop the cached reductions of every aggregate.",
        )
        parser.add_argument(
            "--whole-alias",
            action="store_true",
            help=(
                "When the cache cannot delete by key prefix, clear the entire "
                "cache alias instead (cache.clear()): every entry in it goes, "
                "not only cached reductions."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[str] = options["aggregates"]
        all_aggregates: bool = options["all_aggregates"]
        whole_alias: bool = options["whole_alias"]
        self.verbosity: int = options["verbosity"]
        if not paths and not all_aggregates:
            raise CommandError(
                "Name the aggregates whose cached reductions to drop (dotted "
                "paths of Aggregate subclasses), or give --all."
            )
        if paths and all_aggregates:
            raise CommandError("Give either aggregate paths or --all, not both.")

        # Key prefix -> what the output calls it. Classes that share an
        # aggregate_name share their entries, which are dropped once.
        targets: dict[str, str] = {}
        if all_aggregates:
            targets[key_prefix()] = "every aggregate"
        else:
            for path in paths:
                targets.setdefault(key_prefix(_load_aggregate(path)), path)

        alias = conf.EVENTLOG_CACHE_ALIAS
        try:
            cache: BaseCache = caches[alias]
        except InvalidCacheBackendError as e:
            raise CommandError(
                f"EVENTLOG_CACHE_ALIAS {alias!r} is not a usable cache: {e}"
            ) from e

        delete_pattern = getattr(cache, "delete_pattern", None)
        if callable(delete_pattern):
            if whole_alias:
                self._say(
                    f"Cache {alias!r} deletes by key prefix: --whole-alias is "
                    "not needed and was ignored."
                )
            for prefix, description in targets.items():
                self._delete_prefix(delete_pattern, alias, prefix, description)
            return

        backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
        if not whole_alias:
            raise CommandError(
                f"Cache {alias!r} ({backend}) cannot delete entries by key prefix, "
                "so the cached reductions cannot be dropped alone. --whole-alias "
                f"clears the ENTIRE cache {alias!r}, entries of other code "
                "included. Point EVENTLOG_CACHE_ALIAS at a cache used only for "
                "cached reductions to make that harmless, or use django-redis, "
                "which deletes by prefix."
            )
        try:
            cache.clear()
        except Exception as e:
            raise CommandError(f"Clearing cache {alias!r} failed: {e!r}") from e
        self._say(
            f"Cleared the entire cache {alias!r} ({backend} cannot delete by key "
            f"prefix): the cached reductions of {', '.join(targets.values())} "
            "and every other entry in it are gone."
        )
        if isinstance(cache, LocMemCache) and self.verbosity >= 1:
            self.stderr.write(
                f"Note: cache {alias!r} is a LocMemCache, which lives in the memory "
                "of each process: this cleared only this process's copy. Restart "
                "the server processes to drop theirs."
            )

    def _delete_prefix(
        self, delete_pattern: Any, alias: str, prefix: str, description: str
    ) -> None:
        try:
            count = delete_pattern(_glob_escape(prefix) + "*")
        except Exception as e:
            raise CommandError(
                f"Deleting the cached reductions of {description} from cache "
                f"{alias!r} failed: {e!r}"
            ) from e
        if not isinstance(count, int):
            # django-redis returns None when IGNORE_EXCEPTIONS hid a failure.
            raise CommandError(
                f"Deleting the cached reductions of {description} from cache "
                f"{alias!r} returned {count!r}, not a count: it probably failed "
                "(see the django_redis logger if IGNORE_EXCEPTIONS is on)."
            )
        noun = "cached reduction" if count == 1 else "cached reductions"
        self._say(f"Deleted {count} {noun} of {description} from cache {alias!r}.")

    def _say(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)
