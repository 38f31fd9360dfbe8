// The SQLite store of compiled kernels. An entry is keyed so that a stale one can never be used: the kernel
// hash covers the spec, every template it includes and the generator version; arch, NVRTC version and compile
// options complete the key. WAL journal, busy timeout and one transaction per write make it safe for many
// processes; a file that is not a readable database is moved aside and rebuilt, never trusted.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "generator/kernel_source.hpp"

struct sqlite3;

namespace jetforge::cache {

struct CachedCubin {
  std::string lowered_name;
  int threads = 0;
  std::vector<char> cubin;
};

struct EntryInfo {
  std::string family, spec, arch, nvrtc, hash, template_hash;
  std::int64_t cubin_bytes = 0;
  double compile_ms = 0;
  std::int64_t created = 0;  // unix seconds
  bool stale = false;        // its template hash no longer matches the embedded templates
};

struct WinnerInfo {
  std::string problem, gpu, spec;
  double time_us = 0;
  int candidates = 0;
};

struct CacheError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What to do with a file that is not a readable kernel cache.
enum class OnDamage { move_aside, fail };

class KernelCache {
 public:
  // Opens or creates the database (and its directory). Throws CacheError with the path and SQLite's message
  // when it cannot. A corrupt or foreign file is renamed to "<file>.corrupt-<unix time>" and a new one created
  // (move_aside, for the cache a program owns), or refused (fail, for files a user hands to import/export).
  explicit KernelCache(const std::filesystem::path& file, OnDamage on_damage = OnDamage::move_aside);
  ~KernelCache();
  KernelCache(const KernelCache&) = delete;
  KernelCache& operator=(const KernelCache&) = delete;

  // $JETFORGE_CACHE, else $XDG_CACHE_HOME/jetforge/kernels.db, else $HOME/.cache/jetforge/kernels.db.
  static std::filesystem::path default_path();
  const std::filesystem::path& path() const { return path_; }
  // What happened on open: empty, or the sentence saying a damaged file was moved aside.
  const std::string& recovery_note() const { return recovery_note_; }

  std::optional<CachedCubin> find(const gen::KernelSource& source, const std::string& arch, const std::string& nvrtc, const std::string& options);
  // Inserts unless an identical key exists (another process may have stored it first).
  void store(const gen::KernelSource& source, const std::string& arch, const std::string& nvrtc, const std::string& options, const CachedCubin& cubin,
             double compile_ms);

  std::vector<EntryInfo> list();
  std::int64_t prune_stale();                           // removes entries whose templates changed; returns how many
  std::int64_t export_to(const std::filesystem::path& file);    // copies every entry into another database file
  std::int64_t import_from(const std::filesystem::path& file);  // adds the entries of another database file
  std::string integrity_check();                        // "ok" or SQLite's report

  // Tuning winners: the spec key that was fastest for a problem key on a GPU ("name|SMs|driver").
  void store_winner(const std::string& problem, const std::string& gpu, const std::string& spec, double time_us, int candidates);
  std::optional<std::string> find_winner(const std::string& problem, const std::string& gpu);
  std::vector<WinnerInfo> winners();

  static constexpr int kSchemaVersion = 2;

 private:
  void open_or_recover(OnDamage on_damage);
  void exec(const char* sql);
  std::int64_t copy_rows(const std::filesystem::path& other, bool into_other);  // INSERT OR IGNORE across an ATTACH
  std::filesystem::path path_;
  std::string recovery_note_;
  sqlite3* db_ = nullptr;
};

}  // namespace jetforge::cache
