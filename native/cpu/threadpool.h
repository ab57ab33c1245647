// A small persistent thread pool: the calling thread plus (threads − 1) workers that spin briefly after each job
// (to catch the next one without a wake-up) and then sleep on a condition variable. One process-wide pool; jobs
// from several JS threads (worker_threads) are serialised by a mutex, and a parallel_for issued from inside a job
// runs serially on the calling thread (no nesting, no deadlock).
// Thread count: std::thread::hardware_concurrency(), overridden by env MLA_THREADS, changed at run time by set_threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
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
    // Publish the job: its fields first, then the worker slots, then the generation workers watch.
    job_ = &task;
    ntasks_ = ntasks;
    next_.store(0, std::memory_order_relaxed);
    remaining_.store(ntasks, std::memory_order_relaxed);
    error_ = nullptr;
    // Only as many workers as can take a task join.
    slots_.store(static_cast<int>(std::min<int64_t>(ntasks - 1, nt - 1)), std::memory_order_seq_cst);
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen_.fetch_add(1, std::memory_order_seq_cst);
    }
    if (sleepers_.load(std::memory_order_seq_cst) > 0) cv_.notify_all();
    in_job_ = true;
    work();
    in_job_ = false;
    // Every task done (spin, then sleep until the worker that finishes the last one says so) ...
    if (!spin_until([this] { return remaining_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [this] { return remaining_.load(std::memory_order_acquire) == 0; });
    }
    // ... then no worker may join any more, and the job's fields stay valid until every joined worker has left.
    slots_.store(0, std::memory_order_seq_cst);
    while (busy_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    job_ = nullptr;
    ntasks_ = 0;
    std::exception_ptr err = error_;
    error_ = nullptr;
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
      stop_.store(true, std::memory_order_seq_cst);
      gen_.fetch_add(1, std::memory_order_seq_cst);
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

  /** Polls cond for up to kSpinMicros; whether it became true. Waking a sleeping thread costs tens of microseconds
   *  (more on a VM, where the idle vCPU halts): a decode step issues ~100 parallel jobs of 20–300 µs each, a few
   *  tens of µs of JavaScript apart, and sleeping between them cost more than the second thread gained. The first
   *  kPauseMicros poll with a pause; after that each poll yields the CPU, so on a machine with more runnable threads
   *  than cores the thread we wait for (or another process) runs instead of our spin. After kSpinMicros the caller
   *  sleeps: an idle pool does not burn a core. */
  template <class Cond>
  static bool spin_until(Cond&& cond) {
    if (cond()) return true;
    const auto t0 = std::chrono::steady_clock::now();
    const auto pauseUntil = t0 + std::chrono::microseconds(kPauseMicros);
    const auto until = t0 + std::chrono::microseconds(kSpinMicros);
    for (;;) {
      for (int p = 0; p < 64; p++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (cond()) return true;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return cond();
      if (now >= pauseUntil) std::this_thread::yield();
    }
  }

  // Takes task indices until none are left.
  void work() {
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
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // The last task: wake the submitter if it went to sleep (the lock orders this after its predicate check).
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_one();
      }
    }
  }

  void worker_loop() {
    in_job_ = true;  // a parallel_for inside a task runs serially
    uint64_t seen = gen_.load(std::memory_order_seq_cst);
    for (;;) {
      if (!spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      }
      seen = gen_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_seq_cst)) return;
      // Join the current job if it still has a free slot. busy_ is raised first, so the submitter (which closes
      // the slots, then waits for busy_ = 0) never retires a job a worker is about to read.
      busy_.fetch_add(1, std::memory_order_seq_cst);
      int s = slots_.load(std::memory_order_seq_cst);
      while (s > 0 && !slots_.compare_exchange_weak(s, s - 1, std::memory_order_seq_cst)) {
      }
      if (s > 0) work();
      busy_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  static constexpr int kPauseMicros = 30;
  static constexpr int kSpinMicros = 300;

  std::mutex submit_mu_;  // one job at a time
  std::mutex mu_;         // sleeping and waking (cv_, done_cv_), workers_
  std::mutex err_mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::vector<std::thread> workers_;
  std::atomic<int> active_{1};
  // The current job: written by the submitter before slots_/gen_ are published, read by workers that joined it.
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> remaining_{0};  // tasks not yet finished
  std::atomic<int> slots_{0};          // workers that may still join the current job
  std::atomic<int> busy_{0};           // workers between joining (or trying to) and leaving a job
  std::atomic<int> sleepers_{0};       // workers waiting on cv_
  std::atomic<uint64_t> gen_{0};       // bumped for every job (and at shutdown)
  std::atomic<bool> stop_{false};
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

/** Multiply-adds below which an op runs on the calling thread: handing out a job and collecting it costs a few
 *  microseconds even when the workers are spinning (tens when they sleep), the time of ~10⁵ multiply-adds. */
constexpr double kMinParallelWork = 1.0e5;

/** parallel_tasks, or all tasks in order on the calling thread when `work` (multiply-adds, or elements touched)
 *  is below kMinParallelWork. */
inline void parallel_tasks(int64_t ntasks, double work, const std::function<void(int64_t)>& task) {
  if (work < kMinParallelWork) {
    for (int64_t i = 0; i < ntasks; i++) task(i);
    return;
  }
  ThreadPool::get().run_tasks(ntasks, task);
}

inline int num_threads() { return ThreadPool::get().threads(); }

}  // namespace mla
