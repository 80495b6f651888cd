#!/usr/bin/env bash
# Create (or bring up to date) everything hal-logging needs in Azure Monitor:
#   resource group, Log Analytics workspace, table BenchmarkRuns_CL,
#   Data Collection Endpoint, Data Collection Rule (stream Custom-BenchmarkRuns_CL),
#   a managed identity and its "Monitoring Metrics Publisher" role on the DCR.
# Then print the environment variables the VM side needs.
#
# Idempotent: every step is a PUT or a "show, else create", so running it again
# changes nothing (or adds columns that were added to hal_logging/schema.py).
#
# The table columns and the DCR come from `hal-logging schema` (generated from
# hal_logging/schema.py): there is no column list in this script.
#
# Usage:
#   infrastructure/azure/setup-logging.sh -g RESOURCE_GROUP [-l LOCATION]
#       [--workspace NAME] [--dce NAME] [--dcr NAME]
#       [--identity-name NAME | --vm-name VM | --principal-id OBJECT_ID]
#       [--subscription ID] [--retention-days N] [--dry-run]
#       [--plan analytics|basic|auxiliary] [--total-retention-days N]
#
#   --identity-name  user-assigned managed identity (created if missing); attach it
#                    to the VMs and export the printed AZURE_CLIENT_ID on them.
#   --vm-name        use (and enable) the VM's system-assigned identity instead.
#   --principal-id   an existing identity's object id (service principal or MI).
#   --dry-run        print the az commands and request bodies, call nothing.
#   --plan           the table plan (default analytics). basic: cheaper, one-table
#                    queries; auxiliary: cheapest, slow queries, its dynamic column stored as
#                    text (the DCR converts it), only for a table that does not exist yet.
#   --total-retention-days  interactive + long-term retention: 4-730, or whole
#                    years (1095, 1460, ... 4383). --retention-days (interactive)
#                    applies to the analytics plan only.
#
# Needs: az (logged in with rights to create resources and role assignments), and
# hal-logging (`hal-logging azure-setup` runs this script with its own); HAL_LOGGING_SCHEMA
# may name another command printing the same JSON (default: "hal-logging schema").
set -euo pipefail

RESOURCE_GROUP="${RESOURCE_GROUP:-}"
LOCATION="${LOCATION:-eastus}"
WORKSPACE="${WORKSPACE:-hal-logs}"
DCE_NAME="${DCE_NAME:-hal-logs-dce}"
DCR_NAME="${DCR_NAME:-hal-logs-dcr}"
IDENTITY_NAME="${IDENTITY_NAME:-}"
VM_NAME="${VM_NAME:-}"
PRINCIPAL_ID="${PRINCIPAL_ID:-}"
SUBSCRIPTION="${SUBSCRIPTION:-}"
RETENTION_DAYS="${RETENTION_DAYS:-30}"
PLAN="${PLAN:-analytics}"
TOTAL_RETENTION_DAYS="${TOTAL_RETENTION_DAYS:-}"
DRY_RUN=0
ROLE="Monitoring Metrics Publisher"
ARM="https://management.azure.com"

die() { echo "setup-logging: $*" >&2; exit 1; }
say() { echo "setup-logging: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -g|--resource-group) RESOURCE_GROUP="$2"; shift 2 ;;
    -l|--location) LOCATION="$2"; shift 2 ;;
    --workspace) WORKSPACE="$2"; shift 2 ;;
    --dce) DCE_NAME="$2"; shift 2 ;;
    --dcr) DCR_NAME="$2"; shift 2 ;;
    --identity-name) IDENTITY_NAME="$2"; shift 2 ;;
    --vm-name) VM_NAME="$2"; shift 2 ;;
    --principal-id) PRINCIPAL_ID="$2"; shift 2 ;;
    --subscription) SUBSCRIPTION="$2"; shift 2 ;;
    --retention-days) RETENTION_DAYS="$2"; shift 2 ;;
    --plan) PLAN="$2"; shift 2 ;;
    --total-retention-days) TOTAL_RETENTION_DAYS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[[ -n "$RESOURCE_GROUP" ]] || die "give the resource group: -g NAME (see --help)"
# The Tables API version: only the preview one can create an Auxiliary table.
case "${PLAN,,}" in
  analytics|basic) PLAN="${PLAN,,}"; TABLE_API="2022-10-01" ;;
  auxiliary) PLAN="auxiliary"; TABLE_API="2023-01-01-preview" ;;
  *) die "unknown --plan '$PLAN': choose analytics, basic or auxiliary" ;;
esac
if [[ -n "$TOTAL_RETENTION_DAYS" ]]; then
  case "$TOTAL_RETENTION_DAYS" in
    1095|1460|1826|2191|2556|2922|3288|3653|4018|4383) ;;
    *) [[ "$TOTAL_RETENTION_DAYS" =~ ^[0-9]+$ ]] && (( TOTAL_RETENTION_DAYS >= 4 && TOTAL_RETENTION_DAYS <= 730 )) \
         || die "--total-retention-days $TOTAL_RETENTION_DAYS: Azure takes 4 to 730, or whole years (1095, 1460, 1826, 2191, 2556, 2922, 3288, 3653, 4018, 4383)" ;;
  esac
fi
if [[ -z "$IDENTITY_NAME$VM_NAME$PRINCIPAL_ID" ]]; then
  die "say which identity sends logs: --identity-name NAME, --vm-name VM or --principal-id ID"
fi

# The schema command: `hal-logging schema`, unless HAL_LOGGING_SCHEMA says otherwise.
read -r -a SCHEMA_CMD <<< "${HAL_LOGGING_SCHEMA:-hal-logging schema}"
command -v "${SCHEMA_CMD[0]}" >/dev/null 2>&1 \
  || die "'${SCHEMA_CMD[0]}' not found: run this as 'hal-logging azure-setup' or set HAL_LOGGING_SCHEMA"
schema() { "${SCHEMA_CMD[@]}" "$@"; }

if [[ "$DRY_RUN" == 0 ]]; then
  command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed: https://aka.ms/azure-cli"
  az account show >/dev/null 2>&1 || die "not logged in: run 'az login' first"
fi

# az, or in --dry-run its echo; output values become placeholders then.
az_() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ az' >&3; printf ' %q' "$@" >&3; printf '\n' >&3
    echo "<dry-run>"
  else
    az "$@"
  fi
}

exec 3>&2  # --dry-run traces go here even where a step's stderr is silenced
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Print a request body in --dry-run, so it can be inspected.
show_body() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "--- body $1 ---" >&2
    cat "$2" >&2
  fi
}

SUB_ARGS=()
if [[ -n "$SUBSCRIPTION" ]]; then
  SUB_ARGS=(--subscription "$SUBSCRIPTION")
  [[ "$DRY_RUN" == 1 ]] || az account set --subscription "$SUBSCRIPTION"
fi

say "resource group $RESOURCE_GROUP ($LOCATION)"
az_ group create -n "$RESOURCE_GROUP" -l "$LOCATION" "${SUB_ARGS[@]}" -o none >/dev/null

say "Log Analytics workspace $WORKSPACE"
if ! WS_ID="$(az_ monitor log-analytics workspace show -g "$RESOURCE_GROUP" -n "$WORKSPACE" \
      "${SUB_ARGS[@]}" --query id -o tsv 2>/dev/null)"; then
  WS_ID="$(az_ monitor log-analytics workspace create -g "$RESOURCE_GROUP" -n "$WORKSPACE" \
      -l "$LOCATION" "${SUB_ARGS[@]}" --query id -o tsv)"
fi

say "table BenchmarkRuns_CL, $PLAN plan (columns from hal-logging schema)"
[[ "$PLAN" != auxiliary ]] \
  || say "auxiliary: only a new table can have this plan; Azure refuses it for an existing BenchmarkRuns_CL"
RETENTION_ARGS=(--retention-days "$RETENTION_DAYS")
[[ -z "$TOTAL_RETENTION_DAYS" ]] || RETENTION_ARGS+=(--total-retention-days "$TOTAL_RETENTION_DAYS")
schema --part table --plan "$PLAN" "${RETENTION_ARGS[@]}" > "$TMP/table.json"
show_body table "$TMP/table.json"
az_ rest --method put \
  --url "$ARM$WS_ID/tables/BenchmarkRuns_CL?api-version=$TABLE_API" \
  --body "@$TMP/table.json" -o none >/dev/null

say "data collection endpoint $DCE_NAME"
SUB_ID="$(az_ account show "${SUB_ARGS[@]}" --query id -o tsv)"
DCE_ID="/subscriptions/$SUB_ID/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.Insights/dataCollectionEndpoints/$DCE_NAME"
printf '{"location": "%s", "properties": {"networkAcls": {"publicNetworkAccess": "Enabled"}}}\n' \
  "$LOCATION" > "$TMP/dce.json"
show_body dce "$TMP/dce.json"
DCE_ENDPOINT="$(az_ rest --method put --url "$ARM$DCE_ID?api-version=2022-06-01" \
  --body "@$TMP/dce.json" --query properties.logsIngestion.endpoint -o tsv)"

say "data collection rule $DCR_NAME (stream and data flow from hal-logging schema)"
DCR_ID="/subscriptions/$SUB_ID/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.Insights/dataCollectionRules/$DCR_NAME"
schema --part dcr --plan "$PLAN" --location "$LOCATION" --dce-id "$DCE_ID" --workspace-id "$WS_ID" \
  > "$TMP/dcr.json"
show_body dcr "$TMP/dcr.json"
DCR_IMMUTABLE_ID="$(az_ rest --method put --url "$ARM$DCR_ID?api-version=2022-06-01" \
  --body "@$TMP/dcr.json" --query properties.immutableId -o tsv)"

CLIENT_ID=""
if [[ -n "$IDENTITY_NAME" ]]; then
  say "user-assigned managed identity $IDENTITY_NAME"
  if ! PRINCIPAL_ID="$(az_ identity show -g "$RESOURCE_GROUP" -n "$IDENTITY_NAME" "${SUB_ARGS[@]}" \
        --query principalId -o tsv 2>/dev/null)"; then
    PRINCIPAL_ID="$(az_ identity create -g "$RESOURCE_GROUP" -n "$IDENTITY_NAME" -l "$LOCATION" \
        "${SUB_ARGS[@]}" --query principalId -o tsv)"
  fi
  CLIENT_ID="$(az_ identity show -g "$RESOURCE_GROUP" -n "$IDENTITY_NAME" "${SUB_ARGS[@]}" \
      --query clientId -o tsv)"
elif [[ -n "$VM_NAME" ]]; then
  say "system-assigned identity of VM $VM_NAME"
  PRINCIPAL_ID="$(az_ vm identity assign -g "$RESOURCE_GROUP" -n "$VM_NAME" "${SUB_ARGS[@]}" \
      --query systemAssignedIdentity -o tsv)"
fi

say "role '$ROLE' for $PRINCIPAL_ID on the DCR"
EXISTING="$(az_ role assignment list --assignee "$PRINCIPAL_ID" --role "$ROLE" --scope "$DCR_ID" \
    "${SUB_ARGS[@]}" --query 'length(@)' -o tsv)"
if [[ "$EXISTING" == "0" || "$DRY_RUN" == 1 ]]; then
  az_ role assignment create --assignee-object-id "$PRINCIPAL_ID" \
    --assignee-principal-type ServicePrincipal --role "$ROLE" --scope "$DCR_ID" \
    "${SUB_ARGS[@]}" -o none >/dev/null
else
  say "role assignment already present"
fi

say "done. A new role assignment can take up to 30 minutes to apply (403 until then)."
echo "# Set these on the VM (hal-logging-forward and setup_logging read them):"
echo "export AZURE_MONITOR_DATA_COLLECTION_ENDPOINT='$DCE_ENDPOINT'"
echo "export AZURE_MONITOR_DATA_COLLECTION_RULE_ID='$DCR_IMMUTABLE_ID'"
echo "export AZURE_MONITOR_STREAM_NAME='Custom-BenchmarkRuns_CL'"
if [[ -n "$CLIENT_ID" ]]; then
  echo "export AZURE_CLIENT_ID='$CLIENT_ID'  # the user-assigned identity attached to the VM"
fi
