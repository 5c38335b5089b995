"""Fixtures of the connector contract: one parameter per connector, its sandbox dataset, its workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from dagster import AssetsDefinition, DagsterInstance

from definitions import connector_assets
from resources.warehouse import WarehouseResource
from sync_assets import CONNECTORS
from sync_assets.watermark import FULL_READ
from tests.conftest import register
from tests.contract.cases import CASES, Case
from tests.support import Sandbox, rows, run_sync

WS = "contract"


@dataclass
class Connected:
    """One connector's workspace, registered against the sandbox with small pages and no platform rate limit."""

    case: Case
    instance: DagsterInstance
    sandbox: Sandbox
    workspace: str = WS

    @property
    def assets(self) -> AssetsDefinition:
        return next(a for a in connector_assets if a.node_def.name == f"{self.case.name}_sync")

    def sync(self, **kwargs: Any):
        return run_sync(self.instance, self.assets, self.workspace, **kwargs)

    def client(self) -> Any:
        connection = WarehouseResource().get_connection(self.workspace, self.case.name)
        return self.case.connector.resource.client_for(connection)

    def vendor_rows(self) -> dict[str, dict[str, tuple]]:
        """Every record, read back through the vendor API and the connector's transform: per entity,
        source id -> (source_updated_at, properties)."""
        client, out = self.client(), {}
        for entity in self.case.connector.entities:
            found: dict[str, tuple] = {}
            for page in entity.read(client, FULL_READ):
                for record in page.records:
                    row = entity.transform(record)
                    found[row.source_id] = (row.source_updated_at, record.payload)
            out[entity.name] = found
        return out

    def warehouse_rows(self) -> dict[str, dict[str, tuple]]:
        return {
            entity.name: {
                source_id: (updated, properties)
                for source_id, updated, properties in rows(
                    f"SELECT source_id, source_updated_at, properties FROM {entity.name} "
                    "WHERE workspace_id = :w AND source = :s",
                    w=self.workspace,
                    s=self.case.name,
                )
            }
            for entity in self.case.connector.entities
        }

    def warehouse_lifecycle(self) -> dict[str, dict[str, tuple[bool, str | None]]]:
        """Per entity, source id -> (is_deleted, merged_into)."""
        return {
            entity.name: {
                source_id: (deleted, merged_into)
                for source_id, deleted, merged_into in rows(
                    f"SELECT source_id, is_deleted, merged_into FROM {entity.name} "
                    "WHERE workspace_id = :w AND source = :s",
                    w=self.workspace,
                    s=self.case.name,
                )
            }
            for entity in self.case.connector.entities
        }

    def data_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.requests(self.case.name) if self.case.is_data_request(r["path"])]


@pytest.fixture(params=[c.name for c in CONNECTORS])
def case(request) -> Case:
    return CASES[request.param]


@pytest.fixture
def connected(case: Case, warehouse, instance, sandbox, unlimited) -> Connected:
    sandbox.reset(sizes={case.name: case.sizes}, enforce_limits=False)
    register(warehouse, instance, sandbox, WS, [case.name], **case.small_pages)
    return Connected(case, instance, sandbox)
