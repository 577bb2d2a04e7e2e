"""Two in-memory apps, a real SQLite state store and a connection spec, for engine tests."""

from __future__ import annotations

from typing import Any

from datasync.api.models import DataSyncConnectionSpec, Side, SyncSummary
from datasync.engine import run_sync
from datasync.state import StateStore, open_store
from tests.engine.memory import Clock, KillSwitch, MemoryApp


def make_spec(**overrides: Any) -> DataSyncConnectionSpec:
    spec: dict[str, Any] = {
        "direction": "TwoWay",
        "schedule": "*/15 * * * *",
        "source": {
            "app": "memory",
            "auth": {"type": "AppParameters", "secretRef": {"name": "source-creds"}},
        },
        "destination": {
            "app": "memory",
            "auth": {"type": "AppParameters", "secretRef": {"name": "destination-creds"}},
        },
    }
    spec.update(overrides)
    return DataSyncConnectionSpec.model_validate(spec)


class World:
    def __init__(
        self,
        *,
        field_timestamps: bool = True,
        store: StateStore | None = None,
        clock: Clock | None = None,
        max_batch_size: int = 10,
        page_size: int = 7,
        join_order: bool = True,
        **spec: Any,
    ) -> None:
        self.clock = clock or Clock()
        self.kill = KillSwitch()
        options = {
            "clock": self.clock,
            "field_timestamps": field_timestamps,
            "kill": self.kill,
            "max_batch_size": max_batch_size,
            "page_size": page_size,
            "join_order": join_order,
        }
        self.a = MemoryApp("a", style="lower", **options)
        self.b = MemoryApp("b", style="title", **options)
        self.store = store or open_store("sqlite:///:memory:", "test/connection")
        self.spec = make_spec(**spec)

    async def sync(self, *, dry_run: bool = False) -> SyncSummary:
        return await run_sync(
            self.spec, self.a.connector(), self.b.connector(), self.store, dry_run=dry_run
        )

    @staticmethod
    def a_side() -> Side:
        return Side.SOURCE

    @staticmethod
    def b_side() -> Side:
        return Side.DESTINATION

    def writes(self) -> int:
        return self.a.write_calls + self.b.write_calls
