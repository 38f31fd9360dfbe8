// One GPU and its primary context, plus RAII device memory, streams and events over the loaded driver.
#pragma once
#include <cuda.h>

#include <cstddef>
#include <string>
#include <utility>

#include "runtime/driver.hpp"

namespace jetforge {

struct DeviceInfo {
  std::string name;
  int ordinal = 0;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int max_smem_per_block_optin = 0;
  int l2_bytes = 0;
  size_t total_memory = 0;
  int driver_version = 0;  // e.g. 13000
  std::string arch() const;  // NVRTC target: "sm_90a" on Hopper (wgmma needs the a-suffix), else "sm_XY"
};

// Retains the device's primary context and makes it current on the constructing thread.
class Device {
 public:
  explicit Device(int ordinal = 0);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const DeviceInfo& info() const { return info_; }
  void make_current() const;
  void synchronize() const;

  static int count();  // 0 when there is no driver or no GPU

 private:
  CUdevice dev_ = 0;
  CUcontext ctx_ = nullptr;
  DeviceInfo info_;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, 0)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  CUdeviceptr get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void upload(const void* src, size_t bytes);
  void download(void* dst, size_t bytes) const;
  void fill_bytes(unsigned char value, CUstream stream = nullptr);

 private:
  CUdeviceptr ptr_ = 0;
  size_t bytes_ = 0;
};

class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  CUstream get() const { return s_; }
  void synchronize() const;

 private:
  CUstream s_ = nullptr;
};

class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(CUstream stream);
  // Milliseconds from `start` to this event (both recorded; waits for this one).
  float since(const Event& start) const;

 private:
  CUevent e_ = nullptr;
};

}  // namespace jetforge
