// Reading a YAML file for the tuner's configs: errors become ConfigError naming the file (and line).
#pragma once
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string_view>

#include "tuner/model_config.hpp"

namespace jetforge::tuner {

// `what` names the kind of file in the message ("model config", "tuning space").
YAML::Node load_yaml_file(const std::filesystem::path& file, std::string_view what);

}  // namespace jetforge::tuner
