// A C++ program under brisk for tests/metrics/live_preload.py: four threads
// build maps and vectors of strings (about 30 MB with the nodes, operator new
// throughout), then the data is held until standard input closes, checked, and
// OK printed.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {
constexpr int kThreads = 4;
constexpr int kEntries = 60000;

struct Shard {
  std::map<int, std::string> names;
  std::vector<std::unique_ptr<std::vector<long>>> lists;
};

void build(Shard *s, int t) {
  for (int i = 0; i < kEntries; i++) {
    s->names.emplace(i, "entry-" + std::to_string(t) + "-" + std::to_string(i) + std::string(40, 'x'));
    if (i % 8 == 0) s->lists.push_back(std::make_unique<std::vector<long>>(64, i));
  }
}
}  // namespace

int main() {
  std::vector<Shard> shards(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) threads.emplace_back(build, &shards[t], t);
  for (auto &th : threads) th.join();
  std::puts("READY");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  long sum = 0;
  for (const auto &s : shards) {
    if (s.names.size() != kEntries) return 1;
    for (const auto &l : s.lists) sum += (*l)[63];
  }
  long want = 0;
  for (int i = 0; i < kEntries; i += 8) want += i;
  if (sum != want * kThreads) return 1;
  std::puts("OK");
  return 0;
}
