#include "runtime/device.hpp"

namespace jetforge {

std::string DeviceInfo::arch() const {
  return "sm_" + std::to_string(cc_major) + std::to_string(cc_minor) + (cc_major == 9 && cc_minor == 0 ? "a" : "");
}

int Device::count() {
  if (!driver_available()) return 0;
  int n = 0;
  return driver().cuDeviceGetCount(&n) == CUDA_SUCCESS ? n : 0;
}

Device::Device(int ordinal) {
  const Driver& d = driver();
  int n = 0;
  check(d.cuDeviceGetCount(&n), "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= n)
    throw std::runtime_error("GPU " + std::to_string(ordinal) + " does not exist: this machine has " + std::to_string(n) + " CUDA device(s)");
  check(d.cuDeviceGet(&dev_, ordinal), "cuDeviceGet");
  check(d.cuDevicePrimaryCtxRetain(&ctx_, dev_), "cuDevicePrimaryCtxRetain");
  make_current();

  char name[256] = {};
  check(d.cuDeviceGetName(name, sizeof name, dev_), "cuDeviceGetName");
  info_.name = name;
  info_.ordinal = ordinal;
  auto attr = [&](CUdevice_attribute a) {
    int v = 0;
    check(d.cuDeviceGetAttribute(&v, a, dev_), "cuDeviceGetAttribute");
    return v;
  };
  info_.cc_major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  info_.cc_minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  info_.sm_count = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  info_.max_smem_per_block_optin = attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  info_.l2_bytes = attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
  check(d.cuDeviceTotalMem(&info_.total_memory, dev_), "cuDeviceTotalMem");
  check(d.cuDriverGetVersion(&info_.driver_version), "cuDriverGetVersion");
}

Device::~Device() {
  if (ctx_) driver().cuDevicePrimaryCtxRelease(dev_);
}

void Device::make_current() const { check(driver().cuCtxSetCurrent(ctx_), "cuCtxSetCurrent"); }
void Device::synchronize() const { check(driver().cuCtxSynchronize(), "cuCtxSynchronize"); }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  if (CUresult r = driver().cuMemAlloc(&ptr_, bytes); r != CUDA_SUCCESS) check(r, ("cuMemAlloc of " + std::to_string(bytes) + " bytes").c_str());
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) driver().cuMemFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) driver().cuMemFree(ptr_);
    ptr_ = std::exchange(o.ptr_, 0);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* src, size_t bytes) {
  if (bytes > bytes_) throw std::out_of_range("upload of " + std::to_string(bytes) + " bytes into a buffer of " + std::to_string(bytes_));
  check(driver().cuMemcpyHtoD(ptr_, src, bytes), "cuMemcpyHtoD");
}

void DeviceBuffer::download(void* dst, size_t bytes) const {
  if (bytes > bytes_) throw std::out_of_range("download of " + std::to_string(bytes) + " bytes from a buffer of " + std::to_string(bytes_));
  check(driver().cuMemcpyDtoH(dst, ptr_, bytes), "cuMemcpyDtoH");
}

void DeviceBuffer::fill_bytes(unsigned char value, CUstream stream) {
  check(driver().cuMemsetD8Async(ptr_, value, bytes_, stream), "cuMemsetD8Async");
}

Stream::Stream() { check(driver().cuStreamCreate(&s_, CU_STREAM_NON_BLOCKING), "cuStreamCreate"); }
Stream::~Stream() {
  if (s_) driver().cuStreamDestroy(s_);
}
void Stream::synchronize() const { check(driver().cuStreamSynchronize(s_), "cuStreamSynchronize"); }

Event::Event() { check(driver().cuEventCreate(&e_, CU_EVENT_DEFAULT), "cuEventCreate"); }
Event::~Event() {
  if (e_) driver().cuEventDestroy(e_);
}
void Event::record(CUstream stream) { check(driver().cuEventRecord(e_, stream), "cuEventRecord"); }
float Event::since(const Event& start) const {
  check(driver().cuEventSynchronize(e_), "cuEventSynchronize");
  float ms = 0;
  check(driver().cuEventElapsedTime(&ms, start.e_, e_), "cuEventElapsedTime");
  return ms;
}

}  // namespace jetforge
