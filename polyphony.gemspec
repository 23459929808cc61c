# frozen_string_literal: true

require_relative 'lib/polyphony/version'

Gem::Specification.new do |s|
  s.name = 'polyphony'
  s.version = Polyphony::VERSION
  s.summary = 'Fine-grained concurrency for Ruby on fibers, with a Rust engine on io_uring'
  s.authors = ['Polyphony developers']
  s.license = 'MIT'
  s.required_ruby_version = '>= 3.1'
  s.files = Dir['lib/**/*.rb', 'ext/**/*.{rb,rs,toml}', 'rust/**/*.{rs,toml}', 'exe/*', 'include/*.h',
                'Cargo.toml', 'Cargo.lock', 'README.md', 'CHANGELOG.md', 'docs/**/*.md', 'examples/**/*']
  s.bindir = 'exe'
  s.executables = ['tipi']
  s.extensions = ['ext/polyphony/extconf.rb']
  s.require_paths = ['lib']
  s.metadata['rubygems_mfa_required'] = 'true'
end
