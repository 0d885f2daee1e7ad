#include "chain/repo/txn.h"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "chain/base/failpoint.h"
#include "chain/base/names.h"
#include "chain/layer/registry.h"
#include "chain/repo/write_intent.h"

namespace chainfs {

using nlohmann::json;

namespace {

Status StringList(const json& j, const char* key, std::vector<std::string>* out,
                  const std::string& where) {
  if (!j.contains(key) || !j[key].is_array())
    return Status::Corruption(where + ": missing list '" + key + "'");
  for (const json& e : j[key]) {
    if (!e.is_string())
      return Status::Corruption(where + ": '" + key + "' holds a non-string");
    out->push_back(e.get<std::string>());
  }
  return Status::Ok();
}

// unlink that treats "already gone" as done (roll-forward is idempotent).
Status RemoveIfExists(Env* env, const std::string& path) {
  Status st = env->RemoveFile(path);
  if (st.code() == Status::Code::kNotFound) return Status::Ok();
  return st;
}

std::string ManifestPath(const Repository& repo, const std::string& group,
                         const std::string& checkpoint) {
  return repo.CheckpointDir(group) + "/" + checkpoint + ".json";
}

// Every new delta must be complete before any manifest may name it. The
// journal does not record formats: each file's content tells (probe).
Status CheckNewDeltas(const Repository& repo, const Txn& txn) {
  for (const std::string& f : txn.new_deltas) {
    auto layer = OpenLayerFile(repo.env(), repo.DeltaPath(txn.group, f), nullptr);
    if (!layer.ok())
      return layer.status().Context(
          "journal " + TxnPath(repo, txn.group) +
          " names a new delta that is not usable; not applying it");
  }
  return Status::Ok();
}

}  // namespace

bool Txn::Drops(const std::string& checkpoint) const {
  for (const ManifestStep& st : steps)
    if (st.checkpoint == checkpoint && !st.write) return true;
  return false;
}

std::string Txn::Encode() const {
  json js = json::array();
  for (const ManifestStep& st : steps) {
    if (st.write)
      js.push_back(
          {{"checkpoint", st.checkpoint}, {"write", st.write->Encode()}});
    else
      js.push_back({{"checkpoint", st.checkpoint}, {"remove", true}});
  }
  json j = {{"format", "chainfs-txn"},
            {"version", kTxnVersion},
            {"group", group},
            {"purpose", purpose},
            {"new_deltas", new_deltas},
            {"manifest_sync", manifest_sync == ManifestSync::kPerPhase ? "per-phase" : "each-step"},
            {"manifest_steps", js},
            {"delete_deltas", delete_deltas}};
  return j.dump(2) + "\n";
}

namespace {

Status DecodeSteps(const json& j, const std::string& where, Txn* t) {
  if (!j.contains("manifest_steps") || !j["manifest_steps"].is_array())
    return Status::Corruption(where + ": missing list 'manifest_steps'");
  for (size_t i = 0; i < j["manifest_steps"].size(); ++i) {
    const json& e = j["manifest_steps"][i];
    std::string w = where + ": manifest_steps[" + std::to_string(i) + "]";
    if (!e.is_object() || !e.contains("checkpoint") ||
        !e["checkpoint"].is_string())
      return Status::Corruption(w + ": needs a checkpoint name");
    ManifestStep st;
    st.checkpoint = e["checkpoint"].get<std::string>();
    Status valid = ValidateName("checkpoint", st.checkpoint);
    if (!valid.ok()) return Status::Corruption(w + ": " + valid.message());
    if (e.contains("write")) {
      if (!e["write"].is_string())
        return Status::Corruption(w + ": 'write' is not a manifest");
      CHAINFS_ASSIGN_OR_RETURN(
          Checkpoint cp, Checkpoint::Decode(e["write"].get<std::string>(), w));
      if (cp.group != t->group || cp.name != st.checkpoint)
        return Status::Corruption(w + ": holds the manifest of " + cp.group +
                                  "/" + cp.name);
      st.write = std::move(cp);
    } else if (!e.contains("remove") || e["remove"] != true) {
      return Status::Corruption(w + ": neither 'write' nor 'remove'");
    }
    t->steps.push_back(std::move(st));
  }
  return Status::Ok();
}

// "manifest_sync": absent (journals written before it) is "each-step"; a
// "per-phase" journal must hold its writes before its removals.
Status DecodeManifestSync(const json& j, const std::string& where, Txn* t) {
  if (!j.contains("manifest_sync")) return Status::Ok();
  const json& m = j["manifest_sync"];
  if (m == "each-step") return Status::Ok();
  if (m != "per-phase")
    return Status::Corruption(where + ": 'manifest_sync' is neither \"each-step\" nor \"per-phase\"");
  t->manifest_sync = ManifestSync::kPerPhase;
  for (size_t i = 1; i < t->steps.size(); ++i)
    if (t->steps[i].write && !t->steps[i - 1].write)
      return Status::Corruption(where + ": manifest_steps[" + std::to_string(i) +
                                "] writes after a removal in a \"per-phase\" journal");
  return Status::Ok();
}

}  // namespace

Result<Txn> Txn::Decode(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Status::Corruption(where + ": not a valid JSON object");
  // Fields are type-checked before they are read: json::value() throws on a
  // wrong type (found by tests/fuzz/txn_fuzz.cc).
  if (!j.contains("format") || j["format"] != "chainfs-txn")
    return Status::Corruption(where + ": not a chainfs journal");
  if (!j.contains("version") || !j["version"].is_number_unsigned())
    return Status::Corruption(where + ": missing version");
  if (j["version"].get<uint32_t>() > kTxnVersion)
    return Status::NotSupported(
        where + ": journal version " +
        std::to_string(j["version"].get<uint32_t>()) +
        " is newer than this chainfs; finish it with a newer chainfs");
  Txn t;
  if (!j.contains("group") || !j["group"].is_string())
    return Status::Corruption(where + ": missing group");
  t.group = j["group"].get<std::string>();
  if (j.contains("purpose")) {
    if (!j["purpose"].is_string()) return Status::Corruption(where + ": 'purpose' is not a string");
    t.purpose = j["purpose"].get<std::string>();
  }
  // Names come from disk: they must not escape the group.
  Status valid = ValidateName("group", t.group);
  if (!valid.ok()) return Status::Corruption(where + ": " + valid.message());
  CHAINFS_RETURN_IF_ERROR(StringList(j, "new_deltas", &t.new_deltas, where));
  CHAINFS_RETURN_IF_ERROR(
      StringList(j, "delete_deltas", &t.delete_deltas, where));
  for (const auto* list : {&t.new_deltas, &t.delete_deltas})
    for (const auto& f : *list) {
      Status st = ValidateName("delta file", f);
      if (!st.ok()) return Status::Corruption(where + ": " + st.message());
    }
  CHAINFS_RETURN_IF_ERROR(DecodeSteps(j, where, &t));
  CHAINFS_RETURN_IF_ERROR(DecodeManifestSync(j, where, &t));
  return t;
}

std::string TxnPath(const Repository& repo, const std::string& group) {
  return repo.GroupDir(group) + "/txn.json";
}

Status CommitTxn(const Repository& repo, const Txn& txn, bool* committed) {
  Failpoint("txn.before-commit");
  CHAINFS_RETURN_IF_ERROR(
      repo.env()->WriteFileAtomic(TxnPath(repo, txn.group), txn.Encode()));
  if (committed) *committed = true;
  Failpoint("txn.after-commit");
  Status st = ApplyTxn(repo, txn);
  if (!st.ok())
    return st.Context(
        "consolidation of group " + txn.group +
        " is committed but not fully applied; the next consolidate, prune or "
        "backup of the group finishes it");
  return Status::Ok();
}

namespace {

// The journal now owns the new deltas an intent recorded (write_intent.h):
// the intent goes, if it is this consolidation's (it lists only them).
Status ClearOwnIntent(const Repository& repo, const Txn& txn) {
  auto intent = ReadIntent(repo.env(), repo.IntentPath(txn.group));
  if (!intent.ok() || !intent.value()) return Status::Ok();  // CollectLeftovers reports it
  for (const std::string& f : intent.value()->deltas)
    if (std::find(txn.new_deltas.begin(), txn.new_deltas.end(), f) == txn.new_deltas.end())
      return Status::Ok();
  return ClearIntent(repo.env(), repo.IntentPath(txn.group));
}

// Whether checkpoints/ is fsynced after step i: at the end of each phase
// (txn.h: the order argument), so that no removal becomes durable before the
// writes that precede it, and every step before the old deltas go.
bool PhaseEndsAt(const Txn& txn, size_t i) {
  if (i + 1 == txn.steps.size() || txn.manifest_sync == ManifestSync::kEachStep) return true;
  return txn.steps[i].write && !txn.steps[i + 1].write;
}

}  // namespace

// Why one fsync of checkpoints/ per phase is enough (txn.h has the whole
// argument): each manifest's contents are fsynced before its rename; the
// journal, durable since the commit, makes the next writer redo any rename
// or unlink a crash lost; the fsync ending the writes keeps every removal
// from becoming durable before the manifests that stop naming it; and the
// old deltas go, and then the journal, only after every step is durable.
Status ApplyTxn(const Repository& repo, const Txn& txn) {
  const std::string& g = txn.group;
  Env* env = repo.env();
  CHAINFS_RETURN_IF_ERROR(ClearOwnIntent(repo, txn));
  for (size_t i = 0; i < txn.steps.size(); ++i) {
    const ManifestStep& st = txn.steps[i];
    const std::string path = ManifestPath(repo, g, st.checkpoint);
    Failpoint(st.write ? "txn.before-write-manifest" : "txn.before-delete-manifest");
    if (st.write)
      CHAINFS_RETURN_IF_ERROR(env->WriteFileAtomicNoDirSync(path, st.write->Encode()));
    else
      CHAINFS_RETURN_IF_ERROR(RemoveIfExists(env, path));
    if (PhaseEndsAt(txn, i)) CHAINFS_RETURN_IF_ERROR(env->SyncDir(repo.CheckpointDir(g)));
    Failpoint(st.write ? "txn.after-write-manifest" : "txn.after-delete-manifest");
  }
  for (const std::string& f : txn.delete_deltas) {
    Failpoint("txn.before-delete-delta");
    CHAINFS_RETURN_IF_ERROR(RemoveIfExists(env, repo.DeltaPath(g, f)));
    Failpoint("txn.after-delete-delta");
  }
  CHAINFS_RETURN_IF_ERROR(env->SyncDir(repo.DeltaDir(g)));
  Failpoint("txn.before-remove-journal");
  CHAINFS_RETURN_IF_ERROR(RemoveIfExists(env, TxnPath(repo, g)));
  CHAINFS_RETURN_IF_ERROR(env->SyncDir(repo.GroupDir(g)));
  Failpoint("txn.after-remove-journal");
  return Status::Ok();
}

Result<std::optional<Txn>> RollForward(const Repository& repo,
                                       const std::string& group) {
  // A journal temporary is a crash before the commit point: not committed.
  if (auto names = repo.env()->ListDir(repo.GroupDir(group)); names.ok())
    for (const std::string& f : names.value())
      if (f.rfind("txn.json.tmp.", 0) == 0)
        (void)repo.env()->RemoveFile(repo.GroupDir(group) + "/" + f);
  const std::string path = TxnPath(repo, group);
  auto text = repo.env()->ReadWholeFile(path);
  if (!text.ok()) {
    if (text.status().code() == Status::Code::kNotFound)
      return std::optional<Txn>();
    return text.status();
  }
  CHAINFS_ASSIGN_OR_RETURN(Txn txn, Txn::Decode(text.value(), path));
  if (txn.group != group)
    return Status::Corruption(path + ": journal of group " + txn.group +
                              " in group " + group);
  CHAINFS_RETURN_IF_ERROR(CheckNewDeltas(repo, txn));
  spdlog::info("finishing an interrupted {} in group {} (journal {})",
               txn.purpose.empty() ? "consolidation" : txn.purpose, group,
               path);
  CHAINFS_RETURN_IF_ERROR(ApplyTxn(repo, txn));
  return std::optional<Txn>(std::move(txn));
}

Result<std::optional<Txn>> RecoverGroup(const Repository& repo,
                                        const std::string& group,
                                        int* leftovers) {
  CHAINFS_ASSIGN_OR_RETURN(std::optional<Txn> txn, RollForward(repo, group));
  CHAINFS_ASSIGN_OR_RETURN(int removed, repo.CollectLeftovers(group));
  if (leftovers) *leftovers = removed;
  return txn;
}

}  // namespace chainfs
