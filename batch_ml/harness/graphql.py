"""The GraphQL texts the tests and benchmarks send to a real Dagster webserver (as the UI
does), and the sensor helpers built on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .services import Webserver

# -- instance -------------------------------------------------------------------------------------

DAEMON_HEALTH = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""

# What the "Join the Dagster community" dialog's Skip button sends.
SET_NUX_SEEN = "mutation SetNuxSeen { setNuxSeen }"

REPOSITORIES = """
query Repositories {
  repositoriesOrError {
    ... on RepositoryConnection { nodes { name location { name } } }
  }
}
"""

# -- sensors and automation -----------------------------------------------------------------------

SENSORS = """
query Sensors {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { sensors { name sensorState { id status } } }
    }
  }
}
"""

# Every sensor with its type, interval and its latest ticks.
SENSOR_TICKS = """
query SensorTicks {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        sensors {
          name
          sensorType
          minIntervalSeconds
          sensorState {
            id
            status
            ticks(limit: 50) {
              id status timestamp endTimestamp runIds skipReason error { message }
            }
          }
        }
      }
    }
  }
}
"""

STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}
"""

PAUSE_AUTOMATION = """
mutation Pause { setAutoMaterializePaused(paused: true) }
"""

# -- assets ---------------------------------------------------------------------------------------

ASSET_PARTITION_STATS = """
query AssetPartitionStats {
  assetNodes {
    assetKey { path }
    groupName
    partitionStats { numMaterialized numPartitions numFailed }
    assetMaterializations(limit: 1) { runId }
  }
}
"""

MATERIALIZATIONS = """
query Materializations($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetMaterializations(limit: 20) { runId timestamp partition }
  }
}
"""

PARTITION_STATUSES = """
query PartitionStatuses($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetPartitionStatuses {
      ... on TimePartitionStatuses { ranges { startKey endKey status } }
    }
  }
}
"""

# -- runs -----------------------------------------------------------------------------------------

RUNS = """
query Runs {
  runsOrError {
    ... on Runs {
      results { runId jobName status startTime endTime tags { key value } assetSelection { path } }
    }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

REEXECUTE_RUN = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}
"""

# -- backfills ------------------------------------------------------------------------------------

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""

REEXECUTE_BACKFILL = """
mutation ReexecuteBackfill($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}
"""

# Status and timestamps only: cheap enough to poll every second.
BACKFILL_STATUS = """
query BackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status timestamp endTimestamp }
    ... on PythonError { message }
  }
}
"""

# A backfill with its tags and what each of its assets targeted, materialized and failed.
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id
      status
      timestamp
      endTimestamp
      isAssetBackfill
      tags { key value }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
          ... on UnpartitionedAssetStatus {
            assetKey { path }
            inProgress
            materialized
            failed
          }
        }
      }
    }
    ... on PythonError { message stack }
    ... on BackfillNotFoundError { message }
  }
}
"""

BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  runsOrError(filter: { tags: [{ key: "dagster/backfill", value: $id }] }) {
    ... on Runs {
      results {
        runId
        status
        startTime
        endTime
        tags { key value }
        assetSelection { path }
      }
    }
  }
}
"""


def sensor_states(web: Webserver) -> dict[str, str]:
    """sensor name -> status (RUNNING / STOPPED) of every sensor of the workspace."""
    repos = web.graphql(SENSORS)["repositoriesOrError"]["nodes"]
    return {s["name"]: s["sensorState"]["status"] for r in repos for s in r["sensors"]}


def stop_running_sensors(web: Webserver) -> list[str]:
    """Stop every running sensor, as in the UI (the landing sensor and the automation sensor
    run by default), e.g. before the daemon's first tick so that only the caller starts runs.
    The names of the sensors it stopped."""
    repos = web.graphql(SENSORS)["repositoriesOrError"]["nodes"]
    stopped = []
    for sensor in (s for r in repos for s in r["sensors"]):
        if sensor["sensorState"]["status"] == "RUNNING":
            result = web.graphql(STOP_SENSOR, {"id": sensor["sensorState"]["id"]})["stopSensor"]
            if result.get("instigationState", {}).get("status") != "STOPPED":
                raise RuntimeError(f"could not stop {sensor['name']}: {result}")
            stopped.append(sensor["name"])
    return stopped
