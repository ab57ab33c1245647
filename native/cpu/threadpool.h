// A small persistent thread pool: the calling thread plus (threads − 1) workers that sleep on a condition variable
// between jobs. One process-wide pool; jobs from several JS threads (worker_threads) are serialised by a mutex, and a
// parallel_for issued from inside a job runs serially on the calling thread (no nesting, no deadlock).
// Thread count: std::thread::hardware_concurrency(), overridden by env MLA_THREADS, changed at run time by set_threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mla {

class ThreadPool {
 public:
  static ThreadPool& get() {
    static ThreadPool pool;
    return pool;
  }

  int threads() const { return active_.load(std::memory_order_relaxed); }

  /** Number of threads later jobs use (1 = the calling thread only); workers are created on demand. */
  void set_threads(int n) {
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    std::lock_guard<std::mutex> submit(submit_mu_);
    std::lock_guard<std::mutex> lk(mu_);
    while (static_cast<int>(workers_.size()) < n - 1) {
      workers_.emplace_back([this] { worker_loop(); });
    }
    active_.store(n, std::memory_order_relaxed);
  }

  /** Runs task(i) for every i in [0, ntasks), each exactly once, spread dynamically over the threads.
   *  The first exception thrown by a task is rethrown here after all tasks have finished. */
  void run_tasks(int64_t ntasks, const std::function<void(int64_t)>& task) {
    if (ntasks <= 0) return;
    const int nt = threads();
    if (ntasks == 1 || nt <= 1 || in_job_) {
      for (int64_t i = 0; i < ntasks; i++) task(i);
      return;
    }
    std::lock_guard<std::mutex> submit(submit_mu_);
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &task;
      ntasks_ = ntasks;
      next_.store(0, std::memory_order_relaxed);
      done_ = 0;
      error_ = nullptr;
      // Wake only as many workers as can take a task.
      wake_ = static_cast<int>(std::min<int64_t>(ntasks - 1, nt - 1));
      gen_++;
    }
    cv_.notify_all();
    in_job_ = true;
    int64_t mine = work();
    in_job_ = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_ += mine;
    done_cv_.wait(lk, [this] { return done_ == ntasks_ && busy_ == 0; });
    job_ = nullptr;
    ntasks_ = 0;
    wake_ = 0;
    std::exception_ptr err = error_;
    error_ = nullptr;
    lk.unlock();
    if (err) std::rethrow_exception(err);
  }

  /** fn(begin, end) over [0, n) cut into at most threads() contiguous ranges of at least `grain` items
   *  (static partition: the same n and thread count always give the same ranges). */
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t nt = std::min<int64_t>(threads(), (n + grain - 1) / grain);
    if (nt <= 1 || in_job_) {
      fn(int64_t{0}, n);
      return;
    }
    std::function<void(int64_t)> task = [&](int64_t t) {
      int64_t b = n * t / nt;
      int64_t e = n * (t + 1) / nt;
      if (b < e) fn(b, e);
    };
    run_tasks(nt, task);
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) {
      if (w.joinable()) w.join();
    }
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

 private:
  ThreadPool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (n < 1) n = 1;
    if (const char* env = std::getenv("MLA_THREADS")) {
      int v = std::atoi(env);
      if (v >= 1) n = v;
    }
    set_threads(n);
  }

  // Takes task indices until none are left; returns how many this thread ran.
  int64_t work() {
    int64_t count = 0;
    const std::function<void(int64_t)>* job = job_;
    const int64_t n = ntasks_;
    for (;;) {
      int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) break;
      try {
        (*job)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!error_) error_ = std::current_exception();
      }
      count++;
    }
    return count;
  }

  void worker_loop() {
    in_job_ = true;  // a parallel_for inside a task runs serially
    std::unique_lock<std::mutex> lk(mu_);
    uint64_t seen = gen_;
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || (gen_ != seen && wake_ > 0); });
      if (stop_) return;
      seen = gen_;
      wake_--;
      busy_++;
      lk.unlock();
      int64_t mine = work();
      lk.lock();
      busy_--;
      done_ += mine;
      if (done_ == ntasks_ && busy_ == 0) done_cv_.notify_one();
    }
  }

  std::mutex submit_mu_;  // one job at a time
  std::mutex mu_;         // guards the job fields below
  std::mutex err_mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::vector<std::thread> workers_;
  std::atomic<int> active_{1};
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  int64_t done_ = 0;
  int busy_ = 0;
  int wake_ = 0;
  uint64_t gen_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  static inline thread_local bool in_job_ = false;
};

/** fn(begin, end) over [0, n) on the shared pool; see ThreadPool::parallel_for. */
template <class F>
inline void parallel_for(int64_t n, int64_t grain, F&& fn) {
  ThreadPool::get().parallel_for(n, grain, std::forward<F>(fn));
}

/** task(i) for i in [0, ntasks), dynamically scheduled (for tasks of uneven cost). */
inline void parallel_tasks(int64_t ntasks, const std::function<void(int64_t)>& task) {
  ThreadPool::get().run_tasks(ntasks, task);
}

inline int num_threads() { return ThreadPool::get().threads(); }

}  // namespace mla
