#include "cache/kernel_cache.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <thread>

namespace jetforge::cache {

namespace {

// A file that is not a readable database: the one error that justifies moving it aside. Anything else (locks,
// permissions, a full disk) must never cost the user their cache.
struct Damaged : CacheError {
  using CacheError::CacheError;
};

[[noreturn]] void raise(sqlite3* db, int code, const std::string& what) {
  const std::string message = what + ": " + sqlite3_errmsg(db);
  const int primary = code & 0xff;
  if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) throw Damaged(message);
  throw CacheError(message);
}

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One prepared statement; binds by position, steps, reads columns.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (const int r = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); r != SQLITE_OK) raise(db, r, "SQLite prepare failed");
  }
  ~Statement() { sqlite3_finalize(s_); }
  Statement& bind(int i, const std::string& v) { return check(sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT)); }
  Statement& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Statement& bind(int i, double v) { return check(sqlite3_bind_double(s_, i, v)); }
  Statement& bind_blob(int i, const std::vector<char>& v) { return check(sqlite3_bind_blob(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT)); }
  bool step() {  // true while a row is available
    const int r = sqlite3_step(s_);
    if (r == SQLITE_ROW) return true;
    if (r == SQLITE_DONE) return false;
    raise(db_, r, "SQLite step failed");
  }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, size_t(sqlite3_column_bytes(s_, col))) : std::string();
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  std::vector<char> blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, col));
    return std::vector<char>(p, p + sqlite3_column_bytes(s_, col));
  }

 private:
  Statement& check(int r) {
    if (r != SQLITE_OK) throw CacheError(std::string("SQLite bind failed: ") + sqlite3_errmsg(db_));
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

constexpr const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cubins(
  hash TEXT NOT NULL, arch TEXT NOT NULL, nvrtc TEXT NOT NULL, options TEXT NOT NULL,
  family TEXT NOT NULL, spec TEXT NOT NULL, template TEXT NOT NULL, template_hash TEXT NOT NULL,
  lowered_name TEXT NOT NULL, threads INTEGER NOT NULL, cubin BLOB NOT NULL, compile_ms REAL NOT NULL, created INTEGER NOT NULL,
  PRIMARY KEY(hash, arch, nvrtc, options));
)";

// Schema steps: kMigrations[v - 1] takes a version-v database to version v + 1.
constexpr const char* kMigrations[] = {
    // 1 -> 2: tuning winners, per problem and GPU (name, SM count, driver), each naming the spec that won.
    R"(CREATE TABLE IF NOT EXISTS winners(
         problem TEXT NOT NULL, gpu TEXT NOT NULL, spec TEXT NOT NULL, time_us REAL NOT NULL, candidates INTEGER NOT NULL,
         created INTEGER NOT NULL, PRIMARY KEY(problem, gpu));)",
};

constexpr const char* kColumns =
    "hash, arch, nvrtc, options, family, spec, template, template_hash, lowered_name, threads, cubin, compile_ms, created";

}  // namespace

std::filesystem::path KernelCache::default_path() {
  if (const char* p = std::getenv("JETFORGE_CACHE"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "jetforge" / "kernels.db";
  if (const char* h = std::getenv("HOME"); h && *h) return std::filesystem::path(h) / ".cache" / "jetforge" / "kernels.db";
  return std::filesystem::current_path() / "jetforge-kernels.db";
}

KernelCache::KernelCache(const std::filesystem::path& file, OnDamage on_damage) : path_(file) {
  std::error_code ec;
  if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path(), ec);
  open_or_recover(on_damage);
}

KernelCache::~KernelCache() {
  if (db_) sqlite3_close(db_);
}

void KernelCache::exec(const char* sql) {
  if (const int r = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); r != SQLITE_OK) raise(db_, r, "kernel cache " + path_.string());
}

void KernelCache::open_or_recover(OnDamage on_damage) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (db_) sqlite3_close(db_), db_ = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK)
      throw CacheError("cannot open kernel cache " + path_.string() + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory") +
                       " (pass --cache FILE or set JETFORGE_CACHE to a writable place)");
    sqlite3_busy_timeout(db_, 30000);
    try {
      // quick_check reads every page: a truncated or foreign file fails here, before anything trusts it.
      std::string verdict = "no answer";
      {
        Statement check(db_, "PRAGMA quick_check");
        if (check.step()) verdict = check.text(0);
      }
      if (verdict != "ok") throw Damaged("integrity check: " + verdict);
      // Switching a new file to WAL needs a moment alone with it; processes creating it together retry.
      for (int tries = 0;; ++tries) {
        try {
          exec("PRAGMA journal_mode=WAL");
          break;
        } catch (const Damaged&) {
          throw;
        } catch (const CacheError&) {
          if (tries == 100) throw;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      exec("PRAGMA synchronous=NORMAL");
      exec("BEGIN IMMEDIATE");
      exec(kSchema);
      int v = 0;
      {
        Statement version(db_, "SELECT value FROM meta WHERE key = 'schema_version'");
        if (version.step()) v = std::atoi(version.text(0).c_str());
      }
      if (v != 0) {
        if (v > kSchemaVersion) {
          exec("ROLLBACK");
          throw std::runtime_error("kernel cache " + path_.string() + " has schema version " + std::to_string(v) + ", newer than this jetforge's " +
                                   std::to_string(kSchemaVersion) + ": use a newer jetforge or another --cache file");
        }
        for (; v < kSchemaVersion; ++v) exec(kMigrations[v - 1]);
        Statement set(db_, "UPDATE meta SET value = ?1 WHERE key = 'schema_version'");
        set.bind(1, std::to_string(kSchemaVersion)).step();
      } else {
        for (const char* step : kMigrations) exec(step);  // a new database: every step
        Statement set(db_, "INSERT INTO meta(key, value) VALUES('schema_version', ?1)");
        set.bind(1, std::to_string(kSchemaVersion)).step();
      }
      exec("COMMIT");
      return;
    } catch (const Damaged& e) {
      if (attempt == 1) throw CacheError(e.what());
      if (on_damage == OnDamage::fail) throw CacheError(path_.string() + " is not a readable kernel cache (" + e.what() + ")");
      sqlite3_close(db_), db_ = nullptr;
      const auto aside = path_.string() + ".corrupt-" + std::to_string(now_seconds());
      std::error_code ec;
      std::filesystem::rename(path_, aside, ec);
      for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(path_.string() + suffix, ec);
      recovery_note_ = "kernel cache " + path_.string() + " was unreadable (" + e.what() + "); moved it to " + aside + " and started a new one";
    }
  }
}

std::optional<CachedCubin> KernelCache::find(const gen::KernelSource& source, const std::string& arch, const std::string& nvrtc,
                                             const std::string& options) {
  Statement q(db_, "SELECT lowered_name, threads, cubin FROM cubins WHERE hash = ?1 AND arch = ?2 AND nvrtc = ?3 AND options = ?4");
  q.bind(1, gen::hex64(source.hash)).bind(2, arch).bind(3, nvrtc).bind(4, options);
  if (!q.step()) return std::nullopt;
  return CachedCubin{q.text(0), int(q.integer(1)), q.blob(2)};
}

void KernelCache::store(const gen::KernelSource& source, const std::string& arch, const std::string& nvrtc, const std::string& options,
                        const CachedCubin& cubin, double compile_ms) {
  const auto colon = source.key.find(':');
  const std::string family = source.key.substr(0, colon);
  Statement q(db_, (std::string("INSERT OR IGNORE INTO cubins(") + kColumns + ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)").c_str());
  q.bind(1, gen::hex64(source.hash)).bind(2, arch).bind(3, nvrtc).bind(4, options).bind(5, family).bind(6, source.key);
  q.bind(7, source.template_file).bind(8, gen::hex64(source.template_hash)).bind(9, cubin.lowered_name).bind(10, std::int64_t(cubin.threads));
  q.bind_blob(11, cubin.cubin).bind(12, compile_ms).bind(13, now_seconds());
  q.step();  // a single statement is its own transaction
}

std::vector<EntryInfo> KernelCache::list() {
  std::map<std::string, std::string> current;  // template -> hash of the embedded version ("" if gone)
  std::vector<EntryInfo> out;
  Statement q(db_, "SELECT family, spec, arch, nvrtc, hash, template, template_hash, length(cubin), compile_ms, created FROM cubins ORDER BY family, spec, arch");
  while (q.step()) {
    EntryInfo e{q.text(0), q.text(1), q.text(2), q.text(3), q.text(4), q.text(6), q.integer(7), q.real(8), q.integer(9), false};
    const std::string tmpl = q.text(5);
    if (!current.count(tmpl)) {
      try {
        current[tmpl] = gen::hex64(gen::hash_templates(tmpl));
      } catch (const std::invalid_argument&) {
        current[tmpl] = "";
      }
    }
    e.stale = current[tmpl] != e.template_hash;
    out.push_back(std::move(e));
  }
  return out;
}

std::int64_t KernelCache::prune_stale() {
  std::int64_t removed = 0;
  exec("BEGIN IMMEDIATE");
  try {
    for (const auto& e : list()) {
      if (!e.stale) continue;
      Statement d(db_, "DELETE FROM cubins WHERE hash = ?1 AND arch = ?2 AND nvrtc = ?3");
      d.bind(1, e.hash).bind(2, e.arch).bind(3, e.nvrtc).step();
      removed += sqlite3_changes(db_);
    }
    exec("COMMIT");
  } catch (...) {
    exec("ROLLBACK");
    throw;
  }
  return removed;
}

std::int64_t KernelCache::copy_rows(const std::filesystem::path& other, bool into_other) {
  Statement attach(db_, "ATTACH DATABASE ?1 AS other");
  attach.bind(1, other.string()).step();
  std::int64_t n = 0;
  try {
    exec((std::string("INSERT OR IGNORE INTO ") + (into_other ? "other" : "main") + ".cubins SELECT " + kColumns + " FROM " +
          (into_other ? "main" : "other") + ".cubins")
             .c_str());
    n = sqlite3_changes(db_);
  } catch (...) {
    exec("DETACH DATABASE other");
    throw;
  }
  exec("DETACH DATABASE other");
  return n;
}

std::int64_t KernelCache::export_to(const std::filesystem::path& file) {
  KernelCache target(file, OnDamage::fail);  // creates the schema; never moves a user's file aside
  return copy_rows(file, true);
}

std::int64_t KernelCache::import_from(const std::filesystem::path& file) {
  if (!std::filesystem::exists(file)) throw CacheError("cannot import " + file.string() + ": no such file");
  KernelCache source(file, OnDamage::fail);  // refuses a damaged file before anything is copied from it
  return copy_rows(file, false);
}

void KernelCache::store_winner(const std::string& problem, const std::string& gpu, const std::string& spec, double time_us, int candidates) {
  Statement q(db_, "INSERT OR REPLACE INTO winners(problem, gpu, spec, time_us, candidates, created) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  q.bind(1, problem).bind(2, gpu).bind(3, spec).bind(4, time_us).bind(5, std::int64_t(candidates)).bind(6, now_seconds());
  q.step();
}

std::optional<std::string> KernelCache::find_winner(const std::string& problem, const std::string& gpu) {
  Statement q(db_, "SELECT spec FROM winners WHERE problem = ?1 AND gpu = ?2");
  q.bind(1, problem).bind(2, gpu);
  if (!q.step()) return std::nullopt;
  return q.text(0);
}

std::vector<WinnerInfo> KernelCache::winners() {
  std::vector<WinnerInfo> out;
  Statement q(db_, "SELECT problem, gpu, spec, time_us, candidates FROM winners ORDER BY gpu, problem");
  while (q.step()) out.push_back(WinnerInfo{q.text(0), q.text(1), q.text(2), q.real(3), int(q.integer(4))});
  return out;
}

std::string KernelCache::integrity_check() {
  Statement q(db_, "PRAGMA integrity_check");
  return q.step() ? q.text(0) : "no answer";
}

}  // namespace jetforge::cache
