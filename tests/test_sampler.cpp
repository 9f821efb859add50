// test_sampler.cpp — each sampling step against a distribution computed independently here.
#include <cmath>
#include <map>
#include <set>

#include "engine/error.h"
#include "engine/text/sampler.h"
#include "test_support.h"

using namespace woolly;

namespace {
SamplingParams plain(float temperature) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 1234;
    return p;
}

std::map<TokenId, double> frequencies(Sampler& s, const std::vector<float>& logits, int n) {
    std::map<TokenId, double> f;
    for (int i = 0; i < n; ++i) f[s.sample(logits.data())] += 1.0 / n;
    return f;
}
} // namespace

TEST_CASE("temperature 0 is argmax") {
    Sampler s(plain(0.0f), 5);
    const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.9f, 0.0f};
    CHECK(s.sample(logits.data()) == 1);
}

TEST_CASE("temperature-1 sampling follows softmax; the same seed gives the same tokens") {
    const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
    Sampler s(plain(1.0f), 3);
    const auto f = frequencies(s, logits, 20000);
    const double z = 1 + std::exp(1.0) + std::exp(2.0);
    CHECK(f.at(0) == doctest::Approx(1 / z).epsilon(0.1));
    CHECK(f.at(1) == doctest::Approx(std::exp(1.0) / z).epsilon(0.05));
    CHECK(f.at(2) == doctest::Approx(std::exp(2.0) / z).epsilon(0.05));

    Sampler a(plain(1.0f), 3), b(plain(1.0f), 3);
    for (int i = 0; i < 100; ++i) REQUIRE(a.sample(logits.data()) == b.sample(logits.data()));
    SamplingParams other = plain(1.0f);
    other.seed = 99;
    Sampler c(other, 3);
    Sampler d(plain(1.0f), 3);
    int same = 0;
    for (int i = 0; i < 100; ++i) same += c.sample(logits.data()) == d.sample(logits.data());
    CHECK(same < 100);
}

TEST_CASE("top-k, top-p and min-p keep exactly the tokens they should") {
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                       std::log(0.05f)};
    auto support = [&](SamplingParams p) {
        Sampler s(p, 4);
        std::set<TokenId> seen;
        for (int i = 0; i < 3000; ++i) seen.insert(s.sample(logits.data()));
        return seen;
    };
    SamplingParams k = plain(1.0f);
    k.top_k = 2;
    CHECK(support(k) == std::set<TokenId>{0, 1});
    SamplingParams p = plain(1.0f);
    p.top_p = 0.75f; // 0.5 + 0.3 reaches it
    CHECK(support(p) == std::set<TokenId>{0, 1});
    p.top_p = 0.85f;
    CHECK(support(p) == std::set<TokenId>{0, 1, 2});
    SamplingParams m = plain(1.0f);
    m.min_p = 0.2f; // keeps p >= 0.1
    CHECK(support(m) == std::set<TokenId>{0, 1, 2});
}

TEST_CASE("the repetition penalty divides positive and multiplies negative logits") {
    SamplingParams p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    Sampler s(p, 3);
    const std::vector<float> logits = {1.5f, 1.0f, -5.0f};
    CHECK(s.sample(logits.data()) == 0);
    s.accept(0); // 1.5 -> 0.75 < 1.0
    CHECK(s.sample(logits.data()) == 1);
    s.accept(1); // both penalized: 0.75 vs 0.5
    CHECK(s.sample(logits.data()) == 0);
    s.accept(2);
    s.accept(2); // the window of 2 now holds only token 2
    CHECK(s.sample(logits.data()) == 0);
}

TEST_CASE("frequency and presence penalties subtract per occurrence and once (llama.cpp's rule)") {
    // Greedy over three tokens; the window holds token 0 twice and token 1 once. With
    // frequency 0.3 and presence 0.2: 1.5 - 2*0.3 - 0.2 = 0.7, 1.0 - 0.3 - 0.2 = 0.5, 0.6 stays.
    SamplingParams p = plain(0.0f);
    p.repeat_last_n = 3;
    p.frequency_penalty = 0.3f;
    p.presence_penalty = 0.2f;
    Sampler s(p, 3);
    const std::vector<float> logits = {1.5f, 1.0f, 0.6f};
    s.accept(0);
    s.accept(1);
    s.accept(0);
    CHECK(s.sample(logits.data()) == 0); // 0.7 > 0.6 > 0.5
    p.frequency_penalty = 0.5f;          // 1.5 - 1.0 - 0.2 = 0.3, 1.0 - 0.5 - 0.2 = 0.3
    Sampler t(p, 3);
    t.accept(0);
    t.accept(1);
    t.accept(0);
    CHECK(t.sample(logits.data()) == 2); // 0.6 is now the largest
    // The same logits again: the counts are per call (nothing left over from the last one).
    CHECK(t.sample(logits.data()) == 2);
    p.presence_penalty = 0.0f;
    p.frequency_penalty = -1.0f; // a negative penalty favours what was seen
    Sampler u(p, 3);
    u.accept(1);
    CHECK(u.sample(logits.data()) == 1); // 1.0 + 1.0 = 2.0
}

TEST_CASE("log-probabilities are the log-softmax of the raw logits, the top ones in order") {
    // p = 1/4, 1/4, 1/2, 0 (a logit far below): logprobs -ln 4, -ln 4, -ln 2.
    const std::vector<float> logits = {0.0f, 0.0f, std::log(2.0f), -1000.0f};
    TokenLogprobs lp;
    log_softmax_top(logits.data(), 4, 1, 2, lp);
    CHECK(lp.logprob == doctest::Approx(-std::log(4.0)).epsilon(1e-6));
    REQUIRE(lp.n_top == 2);
    CHECK(lp.top_ids[0] == 2);
    CHECK(lp.top_logprobs[0] == doctest::Approx(-std::log(2.0)).epsilon(1e-6));
    CHECK((lp.top_ids[1] == 0 || lp.top_ids[1] == 1));
    log_softmax_top(logits.data(), 4, 3, 0, lp);
    CHECK(lp.n_top == 0);
    CHECK(lp.logprob == doctest::Approx(-1000.0 - std::log(4.0)).epsilon(1e-6));
    // More asked than there are tokens: all of them, most likely first.
    log_softmax_top(logits.data(), 4, 0, 20, lp);
    REQUIRE(lp.n_top == 4);
    CHECK(lp.top_ids[0] == 2);
    CHECK(lp.top_ids[3] == 3);
    // Awkward size: a vocabulary of 37 with the largest last.
    std::vector<float> ramp(37);
    for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = float(i) * 0.25f;
    log_softmax_top(ramp.data(), 37, 36, 3, lp);
    CHECK(lp.top_ids[0] == 36);
    CHECK(lp.top_ids[1] == 35);
    CHECK(lp.top_ids[2] == 34);
    double sum = 0;
    for (float l : ramp) sum += std::exp(double(l) - 9.0);
    CHECK(lp.logprob == doctest::Approx(9.0 - (9.0 + std::log(sum))).epsilon(1e-5));
}

TEST_CASE("bad sampling parameters are refused by name") {
    SamplingParams p = plain(1.0f);
    p.top_p = 0.0f;
    CHECK_THROWS_WITH_AS(p.validate(), doctest::Contains("top_p"), Error);
    p = plain(-1.0f);
    CHECK_THROWS_WITH_AS(p.validate(), doctest::Contains("temperature"), Error);
    p = plain(1.0f);
    p.presence_penalty = 2.5f;
    CHECK_THROWS_WITH_AS(p.validate(), doctest::Contains("presence_penalty"), Error);
    p = plain(1.0f);
    p.frequency_penalty = -3.0f;
    CHECK_THROWS_WITH_AS(p.validate(), doctest::Contains("frequency_penalty"), Error);
    p = plain(1.0f);
    p.repeat_last_n = -1;
    CHECK_THROWS_WITH_AS(p.validate(), doctest::Contains("repeat_last_n"), Error);
}
